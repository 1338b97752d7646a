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
   paths through it). `check_signal` turns it into the pruner's rule: masks that leave
   a model output without the signal are an error naming the BNs that cut it; a dead
   branch that a live input rejoins (the residual block becomes the identity, a
   Concatenate's other inputs carry on) is allowed, with a note.

Example:

    from eb_tf.pruning import plan as channel_plan
    plan = channel_plan.analyze(model, masks)
    plan.producer_widths()        # {"conv1": (kept, total), ...}
    notes = channel_plan.check_signal(plan, "eb_tf.prune")   # raises for a dead output
"""
import dataclasses
from typing import Dict, List, Tuple

import numpy as np

from eb_tf.compat import keras
from eb_tf.pruning import graph as graph_lib
from eb_tf.pruning import handlers as layer_handlers
from eb_tf.pruning import passes as channel_passes
from eb_tf.sparsity import batchnorm

__all__ = ["Plan", "analyze", "check_masks", "check_signal"]
L = keras.layers


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
    _weights: Dict[int, dict] = dataclasses.field(default_factory=dict)

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
        return int(self.graph.tensors[key].channels)

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


def analyze(model, masks, where: str = "eb_tf.prune") -> Plan:
    """Runs the three passes on `model` under `masks`; see the module docstring.

    Raises:
      ValueError: for invalid masks, unsupported layers or graphs (see
        `layer_handlers.resolve` and `graph.build`).
    """
    g = graph_lib.build(model, where)
    handlers = [layer_handlers.resolve(op, g, where) for op in g.ops]
    masks, bn_key = check_masks(model, masks, where)
    plan = Plan(g, handlers, masks, bn_key)
    channel_passes.forward(plan)
    channel_passes.solve(plan)
    channel_passes.physical(plan)
    plan.signal = channel_passes.signal(plan)
    return plan


def check_signal(plan: Plan, where: str = "eb_tf.prune") -> List[str]:
    """The pruner's rule for masks that cut the signal (see `channel_passes.signal`).

    Masks that leave a model output without the input's signal (every path from the
    inputs to it goes through a BN that keeps none of the channels reaching it, e.g. an
    all-False mask in a plain conv chain) would make the model a constant: an error.
    A branch without the signal that an Add, Multiply or Concatenate joins to an input
    that has it is allowed (a residual block whose branch is all-False becomes the
    identity); each such join gets a note.

    Returns:
      The notes, one per join a dead branch enters (naming its BN keys), for the caller
      to warn with.

    Raises:
      ValueError: naming the dead output(s) and the BN keys whose masks cut the signal
        on every path to them, and how to fix it. An output that is a constant without
        any mask's doing (its weights make it so) is not checked.
    """
    sig, g = plan.signal, plan.graph
    dead = [t for t in g.outputs if not sig[t].any()]
    if dead:
        culprits = _culprits(plan, dead)
        if culprits:
            outs = ", ".join(repr(_tensor_name(plan, t)) for t in dead)
            raise ValueError(
                f"{where}: these masks make the model's output {outs} independent of its "
                f"input (a constant): the signal dies at {_describe(plan, culprits)}, and "
                "no path from the input to the output avoids "
                f"{'it' if len(culprits) == 1 else 'them'}. {_fix_hint(plan, culprits)}")
    notes, seen = [], set()
    for op, h in zip(g.ops, plan.handlers):
        if h.kind not in ("join", "concat") or not sig[op.outputs[0]].any():
            continue
        for t in op.inputs:
            culprits = _culprits(plan, [t]) if not sig[t].any() else {}
            if not culprits or tuple(culprits) in seen:
                continue
            seen.add(tuple(culprits))
            at = f"{op.layer.name!r} ({type(op.layer).__name__})"
            if isinstance(op.layer, L.Add):
                tail = ("the block becomes the identity (plus a constant); the skip path "
                        "carries the signal")
            else:
                tail = "the other inputs carry the signal"
            notes.append(f"{where}: the signal dies at {_describe(plan, culprits)}, so its "
                         f"branch into {at} is a constant: {tail}.")
    return notes


def _fix_hint(plan, culprits) -> str:
    partial = [key for key in culprits if plan.masks[key].any()]
    if not partial:
        return ("Keep at least one channel there, e.g. pass min_channels=1 to "
                "eb_tf.channel_masks, or use a lower ratio.")
    return ("BNs linked only by per-channel layers (BN - ReLU - DepthwiseConv2D - BN) "
            "must keep a common channel, which min_channels does not ensure: use a lower "
            "ratio, or leave such a BN unpruned "
            f"(eb_tf.channel_masks(..., exclude={partial!r})).")


def _tensor_name(plan, t) -> str:
    producer = plan.graph.tensors[t].producer
    return "input" if producer is None else plan.graph.ops[producer].layer.name


def _describe(plan, culprits: Dict[str, np.ndarray]) -> str:
    """"BN 'a' (its mask keeps 0 of 8 channels)", "BNs 'a' (...), 'b' (...)"."""
    parts = []
    for key, reach in culprits.items():
        mask = plan.masks[key]
        if not mask.any():
            what = f"keeps 0 of {mask.size} channels"
        elif (mask & reach).any():          # a later ChannelSelect drops what it keeps
            what = (f"keeps channels {np.flatnonzero(mask).tolist()} of {mask.size}, "
                    f"the signal reaches it on {np.flatnonzero(reach).tolist()}")
        else:
            what = (f"keeps channels {np.flatnonzero(mask).tolist()} of {mask.size}, none of "
                    f"the channels {np.flatnonzero(reach).tolist()} that the signal reaches "
                    "it on")
            before = [k for k in dict.fromkeys(_narrowing(plan, plan.signal, _bn_inputs(
                plan, key))) if k != key]
            if before:
                what += " after " + ", ".join(repr(k) for k in before)
        parts.append(f"{key!r} (its mask {what})")
    return ("BN " if len(parts) == 1 else "BNs ") + ", ".join(parts)


def _culprits(plan, targets) -> Dict[str, np.ndarray]:
    """{BN mask key: the channels the signal reaches it on} for the BNs that cut the
    signal on its way to the dead tensors `targets`, in layer order: those found
    walking back through dead tensors, then again with them opened (as if unmasked)
    until the targets are live or nothing more is found (so two all-False BNs in a row
    are both named)."""
    found, sig = {}, plan.signal
    for _ in range(len(plan.masks) + 1):
        dead = [t for t in targets if not sig[t].any()]
        new = [k for k in _walk_back(plan, sig, dead) if k not in found] if dead else []
        if not new:
            break
        for key in new:
            found[key] = _reach(plan, sig, key)
        sig = channel_passes.signal(plan, frozenset(found))
    order = {key: i for i, key in enumerate(plan.bn_key.values())}
    return {key: found[key] for key in sorted(found, key=order.get)}


def _bn_inputs(plan, key) -> List[int]:
    """The input tensors of every call of the BN of `key`."""
    return [op.inputs[0] for op in plan.graph.ops if plan.bn_key.get(id(op.layer)) == key]


def _reach(plan, sig, key) -> np.ndarray:
    """The channels on which the signal reaches (any call of) the BN of `key`."""
    reach = np.zeros(plan.masks[key].size, bool)
    for t in _bn_inputs(plan, key):
        reach |= sig[t]
    return reach


def _walk_back(plan, sig, starts) -> List[str]:
    """Masked BN keys where the signal dies on the way to the dead tensors `starts`."""
    g, found, seen, stack = plan.graph, [], set(), list(starts)
    while stack:
        t = stack.pop()
        if t in seen or g.tensors[t].producer is None:
            continue
        seen.add(t)
        op = g.ops[g.tensors[t].producer]
        key = plan.bn_key.get(id(op.layer))
        live = [u for u in op.inputs if sig[u].any()]
        if live and key in plan.masks and plan.handlers[op.index].const == "bn":
            found.append(key)                        # the signal dies here
        elif live and plan.handlers[op.index].kind == "select":
            found.extend(_narrowing(plan, sig, live))  # it selects only dead channels
        else:                                        # dead inputs (Multiply: the 0 ones)
            stack.extend(u for u in op.inputs if not sig[u].any())
    return found


def _narrowing(plan, sig, starts) -> List[str]:
    """Masked BNs that drop some of the signal before the tensors `starts`, walking back
    through layers that keep channels apart (stopping at producers and barriers)."""
    g, found, seen, stack = plan.graph, [], set(), list(starts)
    while stack:
        t = stack.pop()
        if t in seen or g.tensors[t].producer is None:
            continue
        seen.add(t)
        op, h = g.ops[g.tensors[t].producer], plan.handlers[g.tensors[t].producer]
        if h.kind in ("producer", "barrier"):
            continue
        key = plan.bn_key.get(id(op.layer))
        drops = key in plan.masks and h.const == "bn"
        if drops and (sig[op.inputs[0]] & ~plan.masks[key]).any():
            found.append(key)
        stack.extend(op.inputs)
    return found
