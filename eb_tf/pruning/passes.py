"""The passes behind `eb_tf.pruning.plan.analyze` (see that module's docstring).

`forward` assigns channel identities and known constants, `solve` finds the physically
needed positions and kept identities (a monotone fixed point), `physical` fixes every
tensor's physical channels and each consumer's input channels, `signal` finds which
channels still carry the input's signal (a masked BN channel is a constant and cuts
the paths through it). A grouped conv keeps as many channels in every group, on its
input and its output (the extra ones by |gamma|, `Plan.scores`); a barrier needs every
channel of its inputs and makes new spaces of its outputs. All work on a
`channel_plan.Plan`.
"""
from typing import AbstractSet, Dict

import numpy as np

from eb_tf.pruning import constants, dispatch

__all__ = ["forward", "solve", "physical", "signal", "group_slices"]
_MAX_ROUNDS = 64


def group_slices(op, n: int):
    """The per-group position slices of a grouped conv's `n` input or output channels."""
    groups = op.layer.groups
    return [slice(g * n // groups, (g + 1) * n // groups) for g in range(groups)]


def _equalize(need, score, slices):
    """Adds positions (highest `score` first) until every group holds as many, >= 1."""
    need = need.copy()
    k = max(1, max(int(need[s].sum()) for s in slices))
    for s in slices:
        idle = np.flatnonzero(~need[s])
        order = idle[np.argsort(-score[s][idle], kind="stable")]
        need[np.arange(need.size)[s][order[:k - int(need[s].sum())]]] = True
    return need


def forward(plan) -> None:
    """Channel identities (`plan.ids`) and constants (`plan.vals`, NaN = variable)."""
    g, uf, producer_ids = plan.graph, plan.uf, {}
    for t in g.inputs:
        plan.ids[t], plan.vals[t] = uf.fresh(plan.channels(t)), constants.nan(plan.channels(t))
    for op, h in zip(g.ops, plan.handlers):
        ids = [plan.ids[t] for t in op.inputs]
        vals = [plan.vals[t] for t in op.inputs]
        out = op.outputs[0]
        n_out = plan.channels(out)
        if h.kind == "unary":
            new_ids, new_vals = ids[0], constants.unary(plan, op, h, vals[0])
        elif h.kind == "producer":
            if id(op.layer) not in producer_ids:
                producer_ids[id(op.layer)] = uf.fresh(n_out)
            new_ids = producer_ids[id(op.layer)]
            new_vals = (constants.evaluate(plan, op, vals) if all(np.isfinite(v).all() for v in vals)
                        else constants.nan(n_out))
        elif h.kind == "join":
            full = [i for i, t in enumerate(op.inputs) if plan.channels(t) == n_out]
            for i in full[1:]:
                uf.union(ids[full[0]], ids[i])
            new_ids = ids[full[0]]
            new_vals = constants.join(plan, op, [np.broadcast_to(v, n_out) for v in vals])
        elif h.kind == "concat":
            new_ids, new_vals = np.concatenate(ids), np.concatenate(vals)
        elif h.kind == "flatten":
            reps = n_out // ids[0].size
            new_ids, new_vals = np.tile(ids[0], reps), np.tile(vals[0], reps)
        elif h.kind == "select":
            idx = np.asarray(op.layer.indices)
            new_ids, new_vals = ids[0][idx], vals[0][idx]
        else:   # barrier: every output a new space
            for t in op.outputs[1:]:
                plan.ids[t], plan.vals[t] = uf.fresh(plan.channels(t)), constants.nan(plan.channels(t))
            new_ids, new_vals = uf.fresh(n_out), constants.nan(n_out)
        plan.ids[out], plan.vals[out] = new_ids, np.asarray(new_vals, dtype=np.float64)


def _back(plan, op, h, r_out, v_out, kept):
    """[(physically needed, value needed)] per input slot, given the output's needs."""
    n_in = [plan.channels(t) for t in op.inputs]
    if h.kind == "unary":
        v = v_out.copy()
        gamma = plan.weights(op.layer).get("gamma") if h.const == "bn" else None
        if gamma is not None:
            v &= gamma != 0                  # a zero-gamma BN channel ignores its input
        return [(r_out.copy(), v)]
    if h.kind == "producer":
        vin = plan.vals[op.inputs[0]]
        fold = h.foldable(op.layer) and not plan.shared(op)
        need = np.isnan(vin) | ((vin != 0) & (not fold))
        if not v_out.any():                  # nobody reads it: its minimum
            need = np.zeros(n_in[0], bool)
        if h.groups:                         # as many input channels in every group
            need = _equalize(need, plan.scores(op.inputs[0]), group_slices(op, need.size))
        return [(need, need.copy())]
    if h.kind == "join":
        full = kept[plan.roots(op.outputs[0])] | r_out
        vals = [np.broadcast_to(plan.vals[t], r_out.size) for t in op.inputs]
        res = []
        for i, n in enumerate(n_in):
            if n != r_out.size:                # broadcast member (1 channel)
                res.append((np.ones(1, bool), np.array([v_out.any()])))
                continue
            v = v_out.copy()
            if dispatch.join_op(op.layer) == "multiply":
                for j, other in enumerate(vals):
                    if j != i:
                        v &= other != 0
            res.append((full.copy(), v))
        return res
    if h.kind == "concat":
        cuts = np.cumsum(n_in)[:-1]
        return list(zip(np.split(r_out, cuts), np.split(v_out, cuts)))
    if h.kind == "flatten":
        reps = r_out.size // n_in[0]
        return [(r_out.reshape(reps, n_in[0]).any(axis=0), v_out.reshape(reps, n_in[0]).any(axis=0))]
    if h.kind == "select":
        idx = np.asarray(op.layer.indices)
        r, v = np.zeros(n_in[0], bool), np.zeros(n_in[0], bool)
        np.logical_or.at(r, idx, r_out if r_out.any() else np.arange(idx.size) == 0)
        np.logical_or.at(v, idx, v_out)
        return [(r, v)]
    return [(np.ones(n, bool), np.ones(n, bool)) for n in n_in]   # barrier


def _reverse(plan, kept, acc):
    g = plan.graph
    req = {k: np.zeros(plan.channels(k), bool) for k in g.tensors}
    val = {k: np.zeros(plan.channels(k), bool) for k in g.tensors}
    for t in g.outputs:
        req[t][:] = True
        val[t][:] = True
    need, changed = {}, False
    for op in reversed(g.ops):
        h = plan.handlers[op.index]
        res = _back(plan, op, h, req[op.outputs[0]], val[op.outputs[0]], kept)
        if h.stateful and plan.shared(op):     # one set of weights: calls must agree
            slots = acc.setdefault(id(op.layer), [np.zeros_like(r) for r, _ in res])
            for i, (r, v) in enumerate(res):
                merged = slots[i] | r
                if not merged.any():
                    merged[0] = True
                changed |= not np.array_equal(merged, slots[i])
                slots[i] = merged
                res[i] = (merged.copy(), v | merged)
        for slot, (t, (r, v)) in enumerate(zip(op.inputs, res)):
            req[t] |= r
            val[t] |= v
            need[(op.index, slot)] = r
    return req, need, changed


def solve(plan) -> None:
    """Fixed point of the reverse pass: `plan.need` per edge, `plan.kept` identities."""
    g = plan.graph
    kept = np.zeros(plan.uf.parent.size, bool)
    for t in g.inputs:
        kept[plan.roots(t)] = True
    acc = {}
    for _ in range(_MAX_ROUNDS):
        req, need, changed = _reverse(plan, kept, acc)
        new = kept.copy()
        for t, r in req.items():
            new[plan.roots(t)[r]] = True
        for op, h in zip(g.ops, plan.handlers):
            if h.kind in ("producer", "join"):
                roots = plan.roots(op.outputs[0])
                if h.groups:                 # as many channels in every output group
                    score = plan.scores(op.outputs[0])
                    new[roots] = _equalize(new[roots], score, group_slices(op, roots.size))
                if not new[roots].any():
                    new[roots[0]] = True     # never remove the last channel of a space
        if not changed and np.array_equal(new, kept):
            plan.kept, plan.need, plan.required = kept, need, req
            return
        kept = new
    raise RuntimeError(f"channel pass did not converge in {_MAX_ROUNDS} rounds")


def physical(plan) -> None:
    """`plan.phys` (physical channels per tensor) and `plan.p_in` (per consumer edge)."""
    g = plan.graph
    for t in g.inputs:
        plan.phys[t] = np.arange(plan.channels(t))
    for op, h in zip(g.ops, plan.handlers):
        p_ins = []
        for slot, t in enumerate(op.inputs):
            p = np.flatnonzero(plan.need[(op.index, slot)])
            if p.size == 0:
                p = plan.phys[t][:1]
            if not np.isin(p, plan.phys[t]).all():
                raise RuntimeError(f"internal error: {op.layer.name!r} reads channels "
                                   f"{np.setdiff1d(p, plan.phys[t])} that were removed")
            plan.p_in[(op.index, slot)] = p
            p_ins.append(p)
        out = op.outputs[0]
        n_out = plan.channels(out)
        if h.kind == "unary":
            phys = p_ins[0]
        elif h.kind == "producer":
            phys = np.flatnonzero(plan.kept[plan.roots(out)])
        elif h.kind == "join":
            phys = next(p for t, p in zip(op.inputs, p_ins) if plan.channels(t) == n_out)
        elif h.kind == "concat":
            offsets = np.concatenate([[0], np.cumsum([plan.channels(t) for t in op.inputs])])
            phys = np.concatenate([p + o for p, o in zip(p_ins, offsets)])
        elif h.kind == "flatten":
            n_in = plan.channels(op.inputs[0])
            phys = (np.arange(n_out // n_in)[:, None] * n_in + p_ins[0][None, :]).reshape(-1)
        elif h.kind == "select":
            phys = np.flatnonzero(plan.required[out])
            phys = phys if phys.size else np.arange(1)
        else:
            phys = np.arange(n_out)
            for t in op.outputs[1:]:
                plan.phys[t] = np.arange(plan.channels(t))
        plan.phys[out] = phys
    for t in g.outputs:
        if plan.phys[t].size != plan.channels(t):
            raise RuntimeError("internal error: a model output lost channels")


def signal(plan, open_keys: AbstractSet[str] = frozenset()) -> Dict[int, np.ndarray]:
    """Per tensor, which channels carry the input's signal (depend on a model input).

    The rules, on the flat graph: a masked BN channel outputs a constant (gamma = beta
    = 0), so it cuts every path through it; per-channel layers (activations, pooling,
    depthwise convs, ...), Flatten and `ChannelSelect` move the signal with their
    channels; a producer (Conv, Dense) or a barrier (softmax, LayerNormalization) has
    it on every output channel iff some input channel has it; an Add-like join or a
    Concatenate has it where any input has it; a Multiply loses it where another input
    is the constant 0 (e.g. a gate behind a masked BN and a ReLU). Weights are not
    looked at (a zero kernel does not cut), so a channel without the signal is a
    constant for sure, one with it depends on the input unless the weights conspire.

    Args:
      plan: a `channel_plan.Plan` after `forward` (the Multiply rule reads `plan.vals`).
      open_keys: BN mask keys to ignore, as if those BNs kept every channel (the
        culprit search of `liveness.check_signal`).

    Returns:
      {tensor key: bool array over its channels}.
    """
    g, sig = plan.graph, {}
    for t in g.inputs:
        sig[t] = np.ones(plan.channels(t), bool)
    for op, h in zip(g.ops, plan.handlers):
        ins = [sig[t] for t in op.inputs]
        n_out = plan.channels(op.outputs[0])
        if h.kind == "unary":
            s = ins[0].copy()
            key = plan.bn_key.get(id(op.layer))
            if h.const == "bn" and key in plan.masks and key not in open_keys:
                s &= plan.masks[key]
        elif h.groups:
            s = np.zeros(n_out, bool)
            for i, o in zip(group_slices(op, ins[0].size), group_slices(op, n_out)):
                s[o] = ins[0][i].any()
        elif h.kind == "producer":
            s = np.full(n_out, bool(ins[0].any()))
        elif h.kind == "barrier":
            s = np.full(n_out, any(bool(x.any()) for x in ins))
            for t in op.outputs[1:]:
                sig[t] = np.full(plan.channels(t), s.any())
        elif h.kind == "join":
            members = [np.broadcast_to(s, n_out) for s in ins]
            s = np.logical_or.reduce(members)
            if dispatch.join_op(op.layer) == "multiply":
                for t, live in zip(op.inputs, members):
                    s &= live | (np.broadcast_to(plan.vals[t], n_out) != 0)
        elif h.kind == "concat":
            s = np.concatenate(ins)
        elif h.kind == "flatten":
            s = np.tile(ins[0], n_out // ins[0].size)
        else:   # select
            s = ins[0][np.asarray(op.layer.indices)]
        sig[op.outputs[0]] = s
    return sig
