"""Barriers: the layers whose channel spaces `eb_tf.prune` keeps whole, and why.

A barrier reads every channel it is given: a layer the pruner cannot map
(`eb_tf.pruning.dispatch.UnmappedLayerError`: a Lambda, a custom layer, a nested model
called twice) or one that mixes channels by design (LayerNormalization, softmax). The
masks of the BNs in the spaces it reads cannot remove channels there: their values stay
masked (so the pruned model is still exact), but the channels stay. `overridden` finds
those masks; `note` is the warning `prune` gives.

Example:

    from eb_tf.pruning import barriers, plan as channel_plan
    plan = channel_plan.analyze(model, masks)
    barriers.overridden(plan)     # {op index: ["bn3", ...]}
    print(barriers.note(plan))
"""
from typing import Dict, List

import numpy as np

from eb_tf.pruning import graph

__all__ = ["overridden", "note"]


def overridden(plan) -> Dict[int, List[str]]:
    """{barrier op index: BN mask keys whose dropped channels it keeps physically}.

    A BN's dropped channel is kept when it is physically in the pruned model and its
    channel space is one the barrier reads; a BN inside a nested model the barrier is
    (called more than once) is counted whenever its mask drops a channel.
    """
    out = {}
    for op, h in zip(plan.graph.ops, plan.handlers):
        if h.kind != "barrier":
            continue
        read = np.unique(np.concatenate([plan.roots(t) for t in op.inputs]))
        inside = graph.all_layers(op.layer) if graph.is_model(op.layer) else ()
        keys = [plan.bn_key[id(l)] for l in inside if plan.bn_key.get(id(l)) in plan.masks
                and not plan.masks[plan.bn_key[id(l)]].all()]
        for bn_op, bn_h in zip(plan.graph.ops, plan.handlers):
            key = plan.bn_key.get(id(bn_op.layer))
            if bn_h.const != "bn" or key not in plan.masks or key in keys:
                continue
            t = bn_op.outputs[0]
            dropped = np.zeros(plan.channels(t), bool)
            dropped[plan.phys[t]] = True
            dropped &= ~plan.masks[key]
            if np.isin(plan.roots(t)[dropped], read).any():
                keys.append(key)
        out[op.index] = keys
    return out


def _names(keys, limit=6):
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def note(plan, where: str = "eb_tf.prune") -> str:
    """The warning for barriers: each unmapped layer (and each known barrier, such as
    LayerNormalization, that keeps masked channels), with the masks it overrode."""
    layers, reasons, keys = [], {}, {}
    for index, dropped_keys in overridden(plan).items():
        layer = plan.graph.ops[index].layer
        if id(layer) not in keys:
            layers.append(layer)
            keys[id(layer)] = []
        reasons[id(layer)] = plan.frozen.get(index, reasons.get(id(layer)))
        keys[id(layer)] += [k for k in dropped_keys if k not in keys[id(layer)]]
    parts = []
    for layer in layers:
        reason, dropped = reasons[id(layer)], keys[id(layer)]
        if reason is None and not dropped:
            continue
        kept = (f"keeps the channels that masks {_names(dropped)} drop" if dropped
                else "overrides no mask")
        parts.append(f"{layer.name!r} ({type(layer).__name__}) "
                     f"{reason or 'reads every channel'}, so it {kept}")
    if not parts:
        return ""
    return (f"{where}: {len(parts)} barrier layer(s) keep every channel of the spaces they "
            f"read (still masked, so the result is exact): {'; '.join(parts)}. Register a "
            "handler (eb_tf.pruning.handlers.register) to prune through a layer, or pass "
            "unknown='error' to refuse unmapped layers.")
