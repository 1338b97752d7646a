"""The kept/total channel table of a mask: how much of each BN layer a ticket keeps.

Example:

    import eb_tf
    masks = eb_tf.channel_masks(model, 0.5)
    report = eb_tf.summary(model, masks)     # prints one row per BN layer + totals
    report.fraction                          # kept fraction of all BN channels
    report.as_dicts()                        # [{"key": "bn1", "kept": 12, ...}, ...]

Mask keys are `eb_tf.sparsity.batchnorm.bn_layers` keys (`outer/inner` inside nested models).
A BN whose dropped channels `eb_tf.prune` must keep, because a barrier layer reads its
channel space (a Lambda, a custom layer, LayerNormalization), names that layer in the
`frozen by` column.
"""
import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from eb_tf.compat import check_model
from eb_tf.pruning import barriers, graph
from eb_tf.pruning import plan as channel_plan
from eb_tf.sparsity import batchnorm

__all__ = ["ChannelRow", "ChannelSummary", "summary"]


@dataclasses.dataclass(frozen=True)
class ChannelRow:
    """One BN layer in `summary`: mask key, the layer feeding it, kept/total channels,
    and the barrier layers that keep its dropped channels in the pruned model."""
    key: str
    producer: str
    kept: int
    total: int
    frozen_by: str = ""

    @property
    def fraction(self) -> float:
        """Kept fraction of this layer's channels."""
        return self.kept / self.total


@dataclasses.dataclass(frozen=True)
class ChannelSummary:
    """What `summary` returns: one `ChannelRow` per candidate BN layer, plus totals."""
    rows: Tuple[ChannelRow, ...]

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    @property
    def fraction(self) -> float:
        """Kept fraction of all BN channels together."""
        return self.kept / self.total if self.total else 1.0

    def as_dicts(self):
        """The rows as a list of dicts (key, producer, kept, total, frozen_by, fraction)."""
        return [dict(dataclasses.asdict(r), fraction=r.fraction) for r in self.rows]

    @property
    def frozen(self) -> Tuple[ChannelRow, ...]:
        """The rows whose dropped channels a barrier layer keeps."""
        return tuple(r for r in self.rows if r.frozen_by)

    def table(self) -> str:
        """The kept/total table as text, last line the totals."""
        w1 = max([len(r.key) for r in self.rows] + [8])
        w2 = max([len(r.producer) for r in self.rows] + [8])
        extra = (lambda r: f"  {r.frozen_by}") if self.frozen else (lambda r: "")
        head = "  frozen by" if self.frozen else ""
        lines = [f"{'BN layer':<{w1}} {'producer':<{w2}} {'kept':>7} {'total':>7} {'kept%':>7}"
                 f"{head}"]
        lines += [f"{r.key:<{w1}} {r.producer:<{w2}} {r.kept:>7} {r.total:>7} "
                  f"{100 * r.fraction:>6.1f}%{extra(r)}" for r in self.rows]
        lines.append(f"{'total':<{w1}} {'':<{w2}} {self.kept:>7} {self.total:>7} "
                     f"{100 * self.fraction:>6.1f}%")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _producer(ref) -> str:
    """Name(s) of the layer(s) whose output the BN normalises (first call)."""
    nodes = (ref.wrapper or ref.layer)._inbound_nodes  # pylint: disable=protected-access
    if not nodes:
        return ""
    layers = [t._keras_history[0] for t in graph.node_inputs(nodes[0])]  # pylint: disable=protected-access
    return ",".join("/".join(ref.path + (batchnorm.unwrap(l).name,)) for l in layers)


def _kept(masks, key, channels) -> int:
    if key not in masks:
        return channels
    mask = np.asarray(masks[key])
    if mask.shape != (channels,):
        raise ValueError(f"eb_tf.summary: masks[{key!r}] has shape {mask.shape}, but BN layer "
                         f"{key!r} has {channels} channels; expected shape ({channels},).")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"eb_tf.summary: masks[{key!r}] must be boolean (True = keep) or "
                         f"0/1, got dtype {mask.dtype} with other values.")
    return int(np.count_nonzero(mask))


def _frozen_by(model, masks) -> Dict[str, str]:
    """{BN key: names of the barrier layers that keep its dropped channels}."""
    if not masks or not graph.is_functional(model):
        return {}
    try:
        plan = channel_plan.analyze(model, {k: np.asarray(v, bool) for k, v in masks.items()},
                                    "eb_tf.summary")
    except ValueError:
        return {}          # prune will say why; the table itself needs no plan
    out: Dict[str, List[str]] = {}
    for index, keys in barriers.overridden(plan).items():
        name = plan.graph.ops[index].layer.name
        for key in keys:
            if name not in out.setdefault(key, []):
                out[key].append(name)
    return {k: ",".join(v) for k, v in out.items()}


def summary(model, masks: Optional[Mapping[str, np.ndarray]] = None,
            print_fn: Optional[Callable[[str], None]] = print) -> ChannelSummary:
    """Per BN layer, how many channels `masks` keeps; printed and returned.

    Args:
      model: a tf_keras or Keras 3 model with BatchNormalization layers (see
        `eb_tf.bn_layers`).
      masks: {BN key: bool array (True = keep)} as drawn by `eb_tf.channel_masks`;
        BN layers without an entry (or `masks=None`) count as fully kept.
      print_fn: called once with the table text; None to print nothing.

    Returns:
      A `ChannelSummary`: `.rows` (key, producer, kept, total, frozen_by,
      `.fraction`), `.kept`, `.total`, `.fraction` over all BN channels, `.frozen`
      (the rows a barrier keeps whole in `eb_tf.prune`), `.as_dicts()`.

    Raises:
      ValueError: for a mask key that is no candidate BN layer of `model` (the valid
        keys are listed), a mask of the wrong shape, or a non-boolean mask.

    Example:

        masks = eb_tf.channel_masks(model, 0.5)
        report = eb_tf.summary(model, masks)    # prints the table
        assert abs(report.fraction - 0.5) < 0.01
    """
    check_model(model, "eb_tf.summary")
    refs = batchnorm.bn_layers(model, where="eb_tf.summary")
    masks = {} if masks is None else masks
    unknown = sorted(set(masks) - {r.key for r in refs})
    if unknown:
        raise ValueError(f"eb_tf.summary: masks has keys {unknown} that are no candidate BN layer "
                         f"of model {model.name!r}; valid keys: {[r.key for r in refs][:20]}.")
    frozen = _frozen_by(model, masks)
    rows = tuple(ChannelRow(r.key, _producer(r), _kept(masks, r.key, int(r.gamma.shape[0])),
                            int(r.gamma.shape[0]), frozen.get(r.key, "")) for r in refs)
    result = ChannelSummary(rows)
    if print_fn is not None:
        print_fn(result.table())
    return result
