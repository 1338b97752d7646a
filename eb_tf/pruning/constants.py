"""What a constant channel becomes through a layer: the values the channel pass tracks.

A masked BN channel outputs exactly its beta (0 after `apply_masks`), so downstream
each channel is either variable (NaN here) or a known constant: a ReLU keeps 0, a
sigmoid makes it 0.5, an Add sums constants, a Multiply by an exact 0 is 0 whatever the
other input. The pass folds such constants into a following bias or keeps the channel.
Layers without a rule are evaluated on the constants themselves (`evaluate`).

Example:

    from eb_tf.pruning import constants
    vals = constants.unary(plan, op, handler, in_vals)   # NaN = variable
"""
import numpy as np

from eb_tf.compat import layer_classes
from eb_tf.pruning import dispatch
from eb_tf.pruning import graph as graph_lib

__all__ = ["nan", "evaluate", "unary", "join"]
_UNKNOWN_DIM = 16          # spatial size used to evaluate layers on constant inputs
_CONCATENATE = layer_classes("Concatenate")


def nan(n):
    """n unknown (variable) channel values."""
    return np.full(n, np.nan)


def evaluate(plan, op, in_vals) -> np.ndarray:
    """Per output channel: the value if the layer maps these constants to a spatially
    uniform constant, NaN otherwise (variable channels are filled with 0)."""
    xs = []
    for key, v in zip(op.inputs, in_vals):
        dims = [1] + [_UNKNOWN_DIM if d is None else d for d in plan.graph.tensors[key].shape[1:]]
        xs.append(np.broadcast_to(np.where(np.isfinite(v), v, 0.0), dims).astype(np.float32))
    args, kwargs = graph_lib.call_arguments(op.node, xs)
    if getattr(op.layer, "_expects_training_arg", False) or \
            getattr(op.layer, "_call_has_training_arg", False):
        kwargs["training"] = False
    y = op.layer(*args, **kwargs)
    y = np.asarray(y, dtype=np.float64).reshape(-1, plan.channels(op.outputs[0]))
    lo, hi = y.min(axis=0), y.max(axis=0)
    uniform = (hi - lo) <= 1e-6 * np.maximum(1.0, np.abs(hi))
    return np.where(uniform & np.isfinite(hi), (lo + hi) / 2, np.nan)


def unary(plan, op, h, v):
    """The output values of a per-channel layer (`h.const`: same, bn or eval)."""
    if h.const == "same":
        return v.copy()
    if h.const == "bn":
        w, n = plan.weights(op.layer), v.size
        gamma, beta = w.get("gamma", np.ones(n)), w.get("beta", np.zeros(n))
        scale = gamma / np.sqrt(w["moving_variance"].astype(np.float64) + op.layer.epsilon)
        return np.where(gamma == 0, beta, (v - w["moving_mean"]) * scale + beta)
    if not np.isfinite(v).any():
        return nan(v.size)
    return np.where(np.isfinite(v), evaluate(plan, op, [v]), np.nan)


def join(plan, op, vs):
    """The output values of a join (Add, Multiply, ..., a TF op on several tensors)."""
    rule, vs = dispatch.join_op(op.layer), np.stack(vs)
    with np.errstate(all="ignore"):
        if rule == "add":
            return vs.sum(axis=0)
        if rule == "subtract":
            return vs[0] - vs[1]
        if rule == "multiply":
            return np.where((vs == 0).any(axis=0), 0.0, vs.prod(axis=0))
        if rule == "average":
            return vs.mean(axis=0)
        if rule == "maximum":
            return vs.max(axis=0)
        if rule == "minimum":
            return vs.min(axis=0)
    if isinstance(op.layer, _CONCATENATE):   # on a non-channel axis
        same = np.all(vs == vs[0], axis=0)
        return np.where(same, vs[0], np.nan)
    known = np.isfinite(vs).all(axis=0)        # any other rule: evaluate the layer
    if not known.any():
        return nan(vs.shape[1])
    return np.where(known, evaluate(plan, op, [np.where(known, v, 0.0) for v in vs]), np.nan)
