"""Per-layer ticket widths (NetAdapt-style): each channel space rounded to its own multiple.

One width multiple for the whole ticket is a compromise: rounding pays where a layer's
kernels are slow on its width and costs FLOPs for nothing elsewhere. What is slow is
mostly not the convolution. Measured on an AVX-512/AMX Xeon at batch 128, oneDNN's
fused batch norm (forward and backward) took 40 ms at 32x32x29 against 5 ms at 32
channels in fp32, 73 ms against 4 ms in bf16, where only multiples of 8 (fp32) or 16
(bf16) are fast, while the conv in front of it barely moved (4.2 ms either way); and a
`ChannelSelect` gather in front of a pre-activation BN costs a copy forward and a
scatter backward. So `choose_layer_widths` gives every channel space the candidate
multiple that suits the layers around it:

1. Each uniform candidate (`widths.CANDIDATES`: 1 = exact, 8, 16, 32) gives every
   space a width, and every conv or dense layer, BatchNormalization and gather an
   input and an output width.
2. A latency table (`eb_tf.pipeline.layer_latency`) holds the time of one such layer
   alone, forward and gradients, at the run's batch size and dtype policy, for an
   (input width, output width) pair, measured when first needed and cached per device
   (`<cache>/widths/layers/`).
3. The summed layer time is minimised by steepest descent over single-space changes,
   from the best uniform assignment: each step gives one space the candidate that saves
   the most time of the layers reading or writing it; a candidate must save `GAIN` of
   that time to replace one with fewer channels. Under a FLOPs limit
   (`max_flops_growth`, `widths.MAX_FLOPS_GROWTH` x the exact ticket by default in
   `widths`) the start is the best uniform assignment within it, and each step takes
   the change that saves the most time per FLOP it adds, so the channels revived go
   where alignment pays most.
4. The composed masks take, per space, the channels of its chosen candidate: never
   fewer than the mask keeps, revived channels the top-|gamma| ones (as `round_masks`).
   A BN left at a width where its unfused kernel is faster is listed in `unfused`
   (`eb_tf.pruning.bn_kernel`), and the per-layer ticket runs it unfused.

The table only ranks (eager per-layer times, no fusion, no memory effects), so
`widths.choose_multiple` times the composed ticket as one more whole-network candidate,
`"layer"`, in the same interleaved rounds as the uniform ones: it is chosen only when
its measured step is the fastest (ties to fewer FLOPs). Measured (preresnet56, p = 0.5,
fp32, batch 128, 5 interleaved rounds) on a Xeon: dense 597 ms, the x8 ticket 793, x32
666, the per-layer ticket 629 ms for 0.59x the FLOPs; on an AMD EPYC under the 1.25x
FLOPs limit: dense 1004 ms, exact 1791, x8 1150 (over the limit), the per-layer ticket
1039 ms for 0.54x the FLOPs.

Example:

    rounded = {m: eb_tf.pruning.round_masks(model, masks, "none" if m == 1 else m)
               for m in (1, 8, 16)}
    choice = layer_widths.choose_layer_widths(model, rounded, batch_size=128)
    choice.assignment      # per space, in `spaces(model, masks)` order: e.g. [1, 8, 1, 16, ...]
    ticket = eb_tf.prune(model, choice.masks)
"""
import dataclasses
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from eb_tf.compat import check_model
from eb_tf.data import cache
from eb_tf.pipeline import layer_latency
from eb_tf.pruning import flops as flops_lib
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning import rounding
from eb_tf.pruning.pruner import prune

__all__ = ["GAIN", "LayerChoice", "spaces", "compose", "choose_layer_widths"]

GAIN = 0.01            # a wider candidate must save 1% of its layers' time
_MAX_STEPS = 2          # descent steps per (space, candidate), a bound only


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """What `choose_layer_widths` predicted and chose.

    Attributes:
      assignment: per channel space (in `spaces` order), the candidate whose width it takes.
      masks: the composed masks.
      predicted_ms: summed layer ms of the assignment.
      uniform_ms: {candidate: summed layer ms of that candidate everywhere}.
      measured: latency-table entries measured now (the rest were cached).
      seconds: time spent.
      flops: the estimated MACs per sample of the assignment (only under a FLOPs limit).
      unfused: the BatchNormalizations that run faster unfused at their chosen width
        (`eb_tf.pruning.bn_kernel.unfuse` them in the pruned ticket).
    """
    assignment: List[int]
    masks: Dict[str, np.ndarray]
    predicted_ms: float
    uniform_ms: Dict[int, float]
    measured: int
    seconds: float
    flops: Optional[int] = None
    unfused: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready, without the masks."""
        return {"assignment": self.assignment, "predicted_ms": round(self.predicted_ms, 3),
                "uniform_ms": {str(m): round(v, 3) for m, v in self.uniform_ms.items()},
                "measured": self.measured, "seconds": round(self.seconds, 3),
                "flops": self.flops, "unfused": list(self.unfused)}


def spaces(model, masks) -> List[Tuple[int, ...]]:
    """The channel spaces of the ticket of `masks` (their identity roots), in layer order."""
    return list(rounding.space_widths(channel_plan.analyze(model, masks)))


def compose(model, rounded: Dict[int, Dict[str, np.ndarray]], assignment: Sequence[int],
            base: int = 1) -> Dict[str, np.ndarray]:
    """Masks whose space i has the channels of `rounded[assignment[i]]`.

    Args:
      model: the dense model.
      rounded: {candidate: masks rounded to it}; `base` must be one of them.
      assignment: per space of `spaces(model, rounded[base])`, a key of `rounded`.
      base: where BN channels of no space come from.
    """
    return _compose(channel_plan.analyze(model, rounded[base]), rounded, assignment, base)


def _compose(plan, rounded, assignment, base):
    """`compose` on the plan of `rounded[base]`."""
    order = list(rounding.space_widths(plan))
    if len(order) != len(assignment):
        raise ValueError(f"eb_tf.pipeline.layer_widths.compose: {len(assignment)} widths for "
                         f"{len(order)} channel spaces")
    space_of = {r: i for i, roots in enumerate(order) for r in roots}
    out = {k: v.copy() for k, v in rounded[base].items()}
    for op, h in zip(plan.graph.ops, plan.handlers):
        key = plan.bn_key.get(id(op.layer))
        if h.const == "bn" and h.kind == "unary" and key in out:
            for pos, root in enumerate(plan.roots(op.inputs[0]).tolist()):
                if root in space_of:
                    out[key][pos] = rounded[assignment[space_of[root]]][key][pos]
    return out


def _flops_model(model, exact, ops, counted=None):
    """Per-sample MACs of an assignment, estimated: the exact ticket's count (`counted`,
    or pruned and counted here), each timed conv/dense layer scaled by its (input x
    output) width. Layers the table does not time keep their exact-ticket MACs;
    `widths` counts the composed ticket for real."""
    if counted is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # barriers: prune says it at the draw
            counted = flops_lib.count_flops(prune(model, exact))
    per_mac = {}
    for op in ops:
        macs = counted.per_layer.get(op.layer.name) if op.kind == "producer" else None
        if macs and op.cin[1] and op.cout[1]:
            per_mac[id(op)] = macs / (op.cin[1] * op.cout[1])
    timed = [op for op in ops if id(op) in per_mac]
    rest = counted.total - sum(per_mac[id(op)] * op.cin[1] * op.cout[1] for op in timed)

    def flops_of(assignment) -> float:
        return rest + sum(per_mac[id(op)] * op.cout[assignment[op.out_space]] *
                          (op.cin[1] if op.in_space is None else op.cin[assignment[op.in_space]])
                          for op in timed)
    return flops_of


def _descend(table, ops, touching, candidates, assignment, flops_of, limit):
    """Steepest descent over single-space changes from `assignment`: each step takes the
    change that saves the most layer time (under a FLOPs `limit`: the most per FLOP
    added, changes that add none first). A wider candidate must save `GAIN` of the time
    of the layers it touches; one with fewer channels is taken at equal time."""
    assignment = list(assignment)
    widths = {s: {m: sum(op.cout[m] for op in local
                         if op.out_space == s and op.kind == "producer") for m in candidates}
              for s, local in touching.items()}
    flops = flops_of(assignment) if flops_of else 0.0
    for _ in range(_MAX_STEPS * len(candidates) * max(len(assignment), 1)):
        best = None
        for s, local in touching.items():
            current = assignment[s]
            base = layer_latency.summed_ms(table, ops, assignment, local) if local else 0.0
            for m in candidates:
                if m == current or not local:
                    continue
                trial = assignment[:s] + [m] + assignment[s + 1:]
                gain = base - layer_latency.summed_ms(table, ops, trial, local)
                wider = widths[s][m] - widths[s][current]
                if (wider > 0 and gain <= GAIN * base) or (wider <= 0 and gain < 0) or \
                        (wider == 0 and gain == 0):
                    continue
                after = flops_of(trial) if flops_of else 0.0
                if limit is not None and after > limit:
                    continue
                added = after - flops
                score = (1, gain, -wider) if limit is None or added <= 0 else \
                    (0, gain / added, -wider)
                if best is None or score > best[0]:
                    best = (score, s, m, after)
        if best is None:
            break
        _, s, m, flops = best
        assignment[s] = m
    return assignment


def choose_layer_widths(model, rounded: Dict[int, Dict[str, np.ndarray]],
                        batch_size: int = 128, policy: str = "float32",
                        cache_dir: Optional[str] = None, device: Optional[str] = None,
                        deadline: Optional[float] = None,
                        max_flops_growth: Optional[float] = None,
                        exact_flops=None) -> Optional[LayerChoice]:
    """The per-space candidates that minimise the summed measured layer time.

    Args:
      model: the dense float32 model.
      rounded: {candidate multiple: the masks rounded to it}, the exact mask (1) among them.
      batch_size, policy: what the layers are timed at.
      cache_dir: the widths cache folder (None: `<eb_tf cache>/widths`); the table lives
        in its `layers/` folder.
      device: the device the table belongs to (`widths.device_descriptor()`); with the
        TF version, policy and batch it names the table file.
      deadline: a `time.perf_counter()` value; measuring stops there and None is returned
        (the entries measured so far are kept for the next draw).
      max_flops_growth: the composed ticket may have at most this many times the exact
        ticket's FLOPs (estimated per layer; None: no limit).
      exact_flops: `eb_tf.count_flops` of the exact ticket, when the caller has it
        (None: pruned and counted here, under a limit).

    Returns:
      A `LayerChoice`, or None past the deadline or when no layer can be timed.
    """
    start = time.perf_counter()
    if 1 not in rounded:
        raise ValueError("eb_tf.pipeline.layer_widths.choose_layer_widths: the exact mask "
                         "(candidate 1) must be among the rounded masks")
    check_model(model, "eb_tf.pipeline.layer_widths.choose_layer_widths")
    plans = {m: channel_plan.analyze(model, r) for m, r in rounded.items()}
    order = list(rounding.space_widths(plans[1]))
    ops = layer_latency.timed_layers(plans, order)
    if not ops:
        return None
    folder = cache_dir or cache.cache_path("widths")
    table = layer_latency.LatencyTable(folder, device or "", policy, int(batch_size), deadline)
    candidates = sorted(rounded)
    touching = {s: [op for op in ops if s in (op.in_space, op.out_space)]
                for s in range(len(order))}
    flops_of = _flops_model(model, rounded[1], ops, exact_flops) if max_flops_growth else None
    limit = None if flops_of is None else max_flops_growth * flops_of([1] * len(order))
    try:
        uniform = {m: layer_latency.summed_ms(table, ops, [m] * len(order)) for m in candidates}
        feasible = [m for m in candidates
                    if limit is None or m == 1 or flops_of([m] * len(order)) <= limit]
        best = min(feasible, key=lambda m: (uniform[m], m))
        assignment = _descend(table, ops, touching, candidates, [best] * len(order),
                              flops_of, limit)
        predicted = layer_latency.summed_ms(table, ops, assignment)
        unfused = sorted({op.layer.name for op in ops if op.kind == "bn" and
                          table.unfused(op, op.cin[assignment[op.in_space]])})
    except layer_latency.OutOfTime:
        table.save()
        return None
    table.save()
    return LayerChoice(assignment, _compose(plans[1], rounded, assignment, 1), predicted,
                       uniform, table.measured, time.perf_counter() - start,
                       None if flops_of is None else int(round(flops_of(assignment))), unfused)
