"""What `widths.choose_multiple` chose: the `WidthChoice` record and the rule that picks.

The candidates are width multiples (1 = the exact mask, 8, 16, 32) and `LAYER`, the
ticket of per-space multiples (`eb_tf.pipeline.layer_widths`). `pick` takes the fastest
median step among the candidates `allowed` by the FLOPs limit (at most `MAX_FLOPS_GROWTH`
x the exact ticket's FLOPs; the exact one always), and a candidate within `TIE` of it
with fewer FLOPs wins over it. `eb_tf.pipeline.widths` re-exports every name here.

Example:

    choice = widths.choose_multiple(model, masks, batch_size=128)
    choice.multiple, choice.over_limit      # e.g. 8, [16, 32]: x16, x32 over the limit
    width_choice.pick({1: [10.0], 8: [5.0]}, {1: 100, 8: 200}, growth=1.25)   # 1: x8 is over
"""
import dataclasses
from typing import Dict, List, Optional, Union

import numpy as np

__all__ = ["TIE", "LAYER", "MAX_FLOPS_GROWTH", "WidthChoice", "check_flops_growth",
           "candidate", "allowed", "pick"]

TIE = 0.03             # medians within 3% are a tie: fewer FLOPs wins
LAYER = "layer"        # the candidate of per-space widths (`eb_tf.pipeline.layer_widths`)
MAX_FLOPS_GROWTH = 1.25  # a rounded ticket keeps at most 1.25x the exact ticket's FLOPs


@dataclasses.dataclass(frozen=True)
class WidthChoice:
    """What `widths.choose_multiple` measured and chose.

    Attributes:
      multiple: the chosen width multiple (1 = the exact mask), or `LAYER`: per-space
        multiples (`layer`).
      ms: {candidate: ms per step of each round}.
      flops: {candidate: ticket FLOPs per sample}.
      device, policy, batch_size: what was measured on.
      cached: read from the cache (nothing measured).
      seconds: time spent measuring (0 when cached).
      source: "measured" (here, now or cached) or "prior" (over budget: the latest
        measured choice on this device, policy and batch).
      budget_seconds: the measurement's budget (None: unlimited).
      trace_seconds: seconds to build and trace one candidate's step (measured ones):
        a later draw's prior tells from it, before pruning anything, whether tracing
        would fit its budget.
      layer: the per-layer search (`layer_widths.LayerChoice.as_dict()`: the per-space
        assignment, predicted and uniform summed layer ms), None when it did not run.
      max_flops_growth: candidates with more than this many times the exact ticket's
        FLOPs were not eligible (None: no limit); they are measured and reported still.
      off_multiple: from the prior: the BatchNormalizations of the chosen ticket whose
        widths are no multiple of the prior's, which then run unfused.
    """
    multiple: Union[int, str]
    ms: Dict[int, List[float]]
    flops: Dict[int, int]
    device: str
    policy: str
    batch_size: int
    cached: bool = False
    seconds: float = 0.0
    source: str = "measured"
    budget_seconds: Optional[float] = None
    trace_seconds: Optional[float] = None
    layer: Optional[dict] = None
    max_flops_growth: Optional[float] = None
    off_multiple: List[str] = dataclasses.field(default_factory=list)

    @property
    def uniform_multiple(self) -> int:
        """The fastest candidate with one multiple for every space, within the FLOPs
        limit or not: this device's preference, the prior of later draws (per-space
        widths belong to one model; the limit is applied to the model drawn then)."""
        uniform = {m: v for m, v in self.ms.items() if m != LAYER}
        if not uniform:
            return self.multiple
        return pick(uniform, self.flops)

    @property
    def unfused(self) -> List[str]:
        """The chosen ticket's BatchNormalizations that run unfused: the per-layer
        search's, or off the prior's multiple (`eb_tf.pruning.bn_kernel.unfuse` them
        after `prune`)."""
        if self.multiple == LAYER:
            return list((self.layer or {}).get("unfused", ()))
        return list(self.off_multiple)

    @property
    def median_ms(self) -> Dict[int, float]:
        """{candidate: median ms per step over the rounds}."""
        return {m: float(np.median(v)) for m, v in self.ms.items()}

    def as_dict(self) -> dict:
        """JSON-ready: the choice, per-candidate medians, rounds and FLOPs."""
        return {"multiple": self.multiple,
                "median_ms": {str(m): v for m, v in self.median_ms.items()},
                "ms_rounds": {str(m): v for m, v in self.ms.items()},
                "flops": {str(m): v for m, v in self.flops.items()}, "device": self.device,
                "policy": self.policy, "batch_size": self.batch_size,
                "cached": self.cached, "seconds": round(self.seconds, 3),
                "source": self.source, "budget_seconds": self.budget_seconds,
                "trace_seconds": self.trace_seconds, "layer": self.layer,
                "uniform_multiple": self.uniform_multiple,
                "max_flops_growth": self.max_flops_growth,
                "over_limit": [str(m) for m in self.over_limit], "unfused": self.unfused}

    @property
    def over_limit(self) -> List[Union[int, str]]:
        """The measured candidates that `max_flops_growth` ruled out."""
        return [m for m in self.ms if not allowed(m, self.flops, self.max_flops_growth)]


def check_flops_growth(value, where: str = "max_flops_growth") -> Optional[float]:
    """`value` as a float >= 1, or None (no limit); a ValueError names it otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not value >= 1:
        raise ValueError(f"{where}: max_flops_growth must be a number >= 1 (the ticket's "
                         f"FLOPs over the exact mask's) or None for no limit, got {value!r}")
    return float(value)


def candidate(key: str) -> Union[int, str]:
    """A candidate from its JSON key: an int multiple, or `LAYER`."""
    return key if key == LAYER else int(key)


def allowed(m, flops, growth) -> bool:
    """Whether candidate `m` is within `growth` x the exact ticket's FLOPs (no exact
    ticket among the candidates, or no limit: always)."""
    return growth is None or m == 1 or 1 not in flops or flops[m] <= growth * flops[1]


def pick(ms, flops, growth=None) -> Union[int, str]:
    """The fastest median of `ms` among the candidates `allowed`; medians within `TIE`
    of it are a tie, which the one with fewer FLOPs wins."""
    medians = {m: float(np.median(v)) for m, v in ms.items() if allowed(m, flops, growth)}
    best = min(medians.values())
    tied = [m for m in medians if medians[m] <= best * (1 + TIE)]
    return min(tied, key=lambda m: (flops[m], str(m)))
