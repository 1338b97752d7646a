"""Masks that cut the signal: the pruner's rule, on the channel plan's `signal` pass.

A masked BN channel is an exact constant, so a BN that keeps none of the channels the
input's signal reaches it on cuts every path through it (`eb_tf.pruning.passes.signal`
marks, per tensor, the channels that still carry the signal). `check_signal(plan)`:

- masks that leave a model output without the signal would make the model a constant:
  a ValueError naming the output and the BNs that cut it, found by walking back from
  the dead output (BN -> DepthwiseConv -> BN chains that keep no common channel are
  named too), and how to fix it;
- a dead branch that a live input rejoins (an all-False residual branch: the block
  becomes the identity; a Concatenate's other inputs carry on) is allowed: one note
  per join, for the caller to warn with.

Example:

    from eb_tf.pruning import liveness, plan as channel_plan
    notes = liveness.check_signal(channel_plan.analyze(model, masks), "eb_tf.prune")
"""
from typing import Dict, List

import numpy as np

from eb_tf.compat import layer_classes
from eb_tf.pruning import dispatch
from eb_tf.pruning import passes as channel_passes
from eb_tf.pruning.plan import Plan

__all__ = ["check_signal"]

_ADD = layer_classes("Add")


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
            if isinstance(op.layer, _ADD) or dispatch.join_op(op.layer) == "add":
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
