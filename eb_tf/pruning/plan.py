"""The channel pass: which channels of every tensor a pruned model physically keeps.

Three passes over the flat graph (`eb_tf.pruning.graph`) of the *masked* model:

1. forward: each tensor position gets a channel identity (a producer's output channel;
   Add/Multiply joins unify identities, so a residual group is one space) and a known
   constant value where inference makes it constant (a masked BN gives exactly 0, a
   ReLU keeps it 0, a sigmoid turns it into 0.5);
2. reverse, to a fixed point: which positions each consumer needs, as a value (V) and
   physically (R). A Conv/Dense needs the non-zero inputs (constants fold into its
   bias where no padding reads them: Dense, 1x1 convs); per-channel layers pass the
   need through (a masked BN's output does not depend on its input); joins need one
   common layout. An identity is kept iff some tensor physically needs it, and every
   producer keeps all kept identities of its space (at least one);
3. forward: the physical channels of each tensor, and the gathers (`ChannelSelect`)
   on edges whose consumer reads fewer channels than the tensor holds. The need pass
   pulls a gather back through per-channel layers, so it lands as early as possible:
   before the masking BN of a pre-activation branch;
4. forward: which channels still carry the input's signal (`plan.signal`; a masked BN
   channel is a constant, so a BN that keeps none of the channels reaching it cuts the
   paths through it); `eb_tf.pruning.liveness.check_signal` turns it into the pruner's
   rule.

Example:

    from eb_tf.pruning import plan as channel_plan
    plan = channel_plan.analyze(model, masks)
    plan.producer_widths()        # {"conv1": (kept, total), ...}
"""
import dataclasses
from typing import Dict, List, Tuple

import numpy as np

from eb_tf.pruning import dispatch
from eb_tf.pruning import graph as graph_lib
from eb_tf.pruning import handlers as layer_handlers
from eb_tf.pruning import passes as channel_passes
from eb_tf.sparsity import batchnorm

__all__ = ["Plan", "analyze", "check_masks"]


def check_masks(model, masks, where: str) -> Tuple[Dict[str, np.ndarray], Dict[int, str]]:
    """Validates `masks` against the model's BN layers.

    Returns:
      ({key: bool array}, {id(BN layer): key}).

    Raises:
      ValueError: naming the key, for an unknown key, a non-bool mask or a wrong length.
    """
    refs = batchnorm.bn_layers(model, where=where)
    by_key = {r.key: r for r in refs}
    if masks is None:
        masks = {}
    if not isinstance(masks, dict):
        raise ValueError(f"{where}: masks must be a dict {{BN key: bool array}}, got "
                         f"{type(masks).__name__}")
    out = {}
    for key, mask in masks.items():
        if key not in by_key:
            known = sorted(by_key)
            raise ValueError(
                f"{where}: mask key {key!r} is not a trainable BatchNormalization of model "
                f"{model.name!r}; known keys ({len(known)}): {known[:20]}"
                f"{' ...' if len(known) > 20 else ''}")
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            raise ValueError(f"{where}: mask {key!r} must be a bool array (True = keep), got "
                             f"dtype {arr.dtype}; convert with mask.astype(bool)")
        size = int(by_key[key].layer.gamma.shape[0])
        if arr.shape != (size,):
            raise ValueError(f"{where}: mask {key!r} has shape {arr.shape}, but the BN has "
                             f"{size} channels; expected shape ({size},)")
        out[key] = arr.copy()
    return out, {id(r.layer): r.key for r in refs}


class _UnionFind:
    def __init__(self):
        self.parent = np.zeros(0, dtype=np.int64)

    def fresh(self, n: int) -> np.ndarray:
        start = self.parent.size
        self.parent = np.concatenate([self.parent, np.arange(start, start + n)])
        return np.arange(start, start + n)

    def find(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        while True:
            p = self.parent[x]
            if np.array_equal(p, x):
                return x
            x = p

    def union(self, a, b):
        for i, j in zip(self.find(a), self.find(b)):
            ri, rj = int(self.find(i)), int(self.find(j))
            if ri != rj:
                self.parent[max(ri, rj)] = min(ri, rj)


@dataclasses.dataclass
class Plan:
    """The pass's result; see the module docstring. Keys are flat tensor keys."""
    graph: graph_lib.Graph
    handlers: List[layer_handlers.Handler]
    masks: Dict[str, np.ndarray]
    bn_key: Dict[int, str]
    uf: _UnionFind = dataclasses.field(default_factory=_UnionFind)
    ids: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    vals: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    need: Dict[Tuple[int, int], np.ndarray] = dataclasses.field(default_factory=dict)
    required: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    kept: np.ndarray = None
    phys: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    p_in: Dict[Tuple[int, int], np.ndarray] = dataclasses.field(default_factory=dict)
    signal: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    frozen: Dict[int, str] = dataclasses.field(default_factory=dict)   # op index -> why
    _weights: Dict[int, dict] = dataclasses.field(default_factory=dict)
    _id_score: np.ndarray = None

    def weights(self, layer) -> Dict[str, np.ndarray]:
        """{short name: array} of a layer, with the masks applied to BN gamma and beta."""
        if id(layer) not in self._weights:
            w = {layer_handlers.weight_name(v): np.array(v.numpy()) for v in layer.weights}
            mask = self.masks.get(self.bn_key.get(id(layer)))
            if mask is not None:
                for name in ("gamma", "beta"):
                    if name in w:
                        w[name][~mask] = 0
            self._weights[id(layer)] = w
        return self._weights[id(layer)]

    def channels(self, key: int) -> int:
        """The tensor's channel count (1 for a tensor of unknown channels: an opaque
        value that only barriers touch)."""
        channels = self.graph.tensors[key].channels
        return 1 if channels is None else int(channels)

    def scores(self, key: int) -> np.ndarray:
        """Per position of a tensor, the |gamma| before masking of the BN that
        normalises its channel space (0 where none): which channels to keep first when
        a grouped conv needs more than the masks keep."""
        if self._id_score is None:
            self._id_score = np.zeros(self.uf.parent.size)
            for op, h in zip(self.graph.ops, self.handlers):
                gamma = getattr(op.layer, "gamma", None) if h.const == "bn" else None
                if gamma is not None and op.outputs[0] in self.ids:
                    roots = self.roots(op.outputs[0])
                    self._id_score[roots] = np.maximum(self._id_score[roots],
                                                       np.abs(gamma.numpy()))
        return self._id_score[self.roots(key)]

    def roots(self, key: int) -> np.ndarray:
        """The channel-space identity of each position of a tensor."""
        return self.uf.find(self.ids[key])

    def shared(self, op) -> bool:
        return len(self.graph.calls[id(op.layer)]) > 1

    def needs_gather(self, op, slot: int) -> bool:
        return not np.array_equal(self.p_in[(op.index, slot)], self.phys[op.inputs[slot]])

    def producer_widths(self) -> Dict[str, Tuple[int, int]]:
        """{producer layer name ('outer/inner' when nested): (kept, total) channels}."""
        out = {}
        for op, h in zip(self.graph.ops, self.handlers):
            if h.kind == "producer":
                name = "/".join(op.path + (op.layer.name,))
                out[name] = (int(self.phys[op.outputs[0]].size), self.channels(op.outputs[0]))
        return out

    def fold(self, op) -> np.ndarray:
        """Producer: per input channel the constant folded into the bias (0 if none)."""
        vin = self.vals[op.inputs[0]]
        if not self.handlers[op.index].foldable(op.layer) or self.shared(op):
            return np.zeros(vin.size)
        dropped = np.ones(vin.size, bool)
        dropped[self.p_in[(op.index, 0)]] = False
        return np.where(dropped & np.isfinite(vin) & (vin != 0), vin, 0.0)


UNKNOWN = ("barrier", "error")


def analyze(model, masks, where: str = "eb_tf.prune", unknown: str = "barrier") -> Plan:
    """Runs the passes on `model` under `masks`; see the module docstring.

    Args:
      model: a functional or Sequential tf_keras model.
      masks: {BN key: bool array}.
      where: the public function's name, for messages.
      unknown: "barrier": a layer the pruner cannot map becomes a barrier (its spaces
        keep their channels; `Plan.frozen` says why); "error": it is a ValueError.

    Raises:
      ValueError: for invalid masks or graphs (see `graph.build`), a bad `unknown`, or
        with `unknown="error"` a layer the pruner cannot map (`dispatch.resolve`).
    """
    if unknown not in UNKNOWN:
        raise ValueError(f"{where}: unknown={unknown!r} must be one of {UNKNOWN}")
    g = graph_lib.build(model, where)
    handlers, frozen = [], {}
    for op in g.ops:
        try:
            handlers.append(dispatch.resolve(op, g, where))
        except dispatch.UnmappedLayerError as e:
            if unknown == "error":
                raise
            handlers.append(layer_handlers.BARRIER)
            frozen[op.index] = e.reason
    masks, bn_key = check_masks(model, masks, where)
    plan = Plan(g, handlers, masks, bn_key, frozen=frozen)
    channel_passes.forward(plan)
    channel_passes.solve(plan)
    channel_passes.physical(plan)
    plan.signal = channel_passes.signal(plan)
    return plan
