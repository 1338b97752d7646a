"""Where ThiNet measures a channel's removal: the next layer of each BN and its inputs' parts.

A channel c of a BatchNorm output that is pruned (gamma = beta = 0, as
`eb_tf.apply_masks` does) is zero after the BN; layers that act per channel and map
zero to zero (ReLU and the other zero-preserving activations, pooling, padding,
dropout) keep it zero, so the next Conv2D (or Dense) sees input channel c as zero.
`next_layers(model)` finds, for each BN, that next layer when the path to it is such
a chain of single-consumer tensors; BNs whose output reaches an Add, a Concatenate,
several consumers or any other layer get None (ThiNet leaves them to the NS choice).

`sample(model, next_by_key, images, points, seed)` runs the images through the model
once and returns, per BN key, the contributions X (samples, channels) of each input
channel to sampled entries of the next layer's output (bias excluded): X[m, c] =
sum_{kh, kw} W[kh, kw, c, d] x[i + kh, j + kw, c] at a random position (i, j) and
output channel d, `points` entries per image (Luo et al. sample 10).

Example:

    from eb_tf.baselines import contributions
    nxt = contributions.next_layers(model)             # {"bn1": conv2 op, "bn3": None}
    xs = contributions.sample(model, nxt, images, points=10, seed=0)
    xs["bn1"].shape                                     # (10 * images, bn1 channels)
"""
from typing import Dict, Iterable, Optional

import numpy as np

from eb_tf.compat import BatchNormalizationBase, keras, tf
from eb_tf.pruning import graph
from eb_tf.sparsity.batchnorm import bn_layers

__all__ = ["next_layers", "sample", "PASS_THROUGH"]

L = keras.layers
# Per-channel layers that keep a zero channel zero (Activation: checked on 0.0).
PASS_THROUGH = (L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation, L.Dropout,
                L.SpatialDropout2D, L.MaxPooling2D, L.AveragePooling2D, L.ZeroPadding2D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)


def _keeps_zero(layer) -> bool:
    if isinstance(layer, L.Activation):
        return float(layer.activation(tf.zeros((1,)))[0]) == 0.0
    return isinstance(layer, PASS_THROUGH)


def _is_next_layer(layer, rank: int) -> bool:
    if type(layer) is L.Conv2D:  # exact type: not depthwise, separable or transposed
        return layer.groups == 1 and layer.data_format == "channels_last" and rank == 4
    return type(layer) is L.Dense and rank == 2


def next_layers(model) -> Dict[str, Optional[graph.Op]]:
    """{BN key: the op of the Conv2D/Dense that reads its channels, or None}.

    Only top-level BNs of a functional model can have one (nested-model BNs: None).

    Example:
      >>> {k: op and op.layer.name for k, op in next_layers(model).items()}
      {'bn1': 'conv2', 'bn2': 'logits'}
    """
    g = graph.build(model, "eb_tf.baselines.contributions.next_layers")
    out = {}
    for ref in bn_layers(model, where="eb_tf.baselines.contributions.next_layers"):
        ops = g.ops_of(ref.layer) if not ref.path else []
        out[ref.key] = _follow(g, ops[0].outputs[0]) if len(ops) == 1 else None
    return out


def _follow(g, tensor) -> Optional[graph.Op]:
    while True:
        info = g.tensors[tensor]
        if info.is_output or len(info.consumers) != 1:
            return None
        op = g.ops[info.consumers[0][0]]
        if op.path or isinstance(op.layer, BatchNormalizationBase):
            return None
        if _is_next_layer(op.layer, info.shape.rank):
            return op
        if not _keeps_zero(op.layer) or len(op.outputs) != 1:
            return None
        tensor = op.outputs[0]


def _pads(size, kernel, stride, rate, padding):
    span = (kernel - 1) * rate + 1
    out = -(-size // stride) if padding == "same" else (size - span) // stride + 1
    total = max((out - 1) * stride + span - size, 0) if padding == "same" else 0
    return out, (total // 2, total - total // 2)


def _conv_parts(layer, x, points, rng):
    """(images * points, C) contributions to random entries of a Conv2D's output."""
    kernel = layer.get_weights()[0]                      # (kh, kw, C, D)
    (kh, kw, _, filters), (sh, sw), (dh, dw) = kernel.shape, layer.strides, layer.dilation_rate
    oh, pad_h = _pads(x.shape[1], kh, sh, dh, layer.padding)
    ow, pad_w = _pads(x.shape[2], kw, sw, dw, layer.padding)
    x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    m = x.shape[0] * points
    n = np.repeat(np.arange(x.shape[0]), points)
    i, j, d = rng.integers(0, oh, m), rng.integers(0, ow, m), rng.integers(0, filters, m)
    rows = (i * sh)[:, None] + np.arange(kh) * dh           # (m, kh)
    cols = (j * sw)[:, None] + np.arange(kw) * dw           # (m, kw)
    patch = x[n[:, None, None], rows[:, :, None], cols[:, None, :], :]   # (m, kh, kw, C)
    weights = np.moveaxis(kernel[..., d], -1, 0)            # (m, kh, kw, C)
    return np.einsum("mhwc,mhwc->mc", patch, weights)


def _dense_parts(layer, x, points, rng):
    kernel = layer.get_weights()[0]                      # (C, D)
    n = np.repeat(np.arange(x.shape[0]), points)
    d = rng.integers(0, kernel.shape[1], n.size)
    return x[n] * kernel[:, d].T


def sample(model, next_by_key: Dict[str, Optional[graph.Op]], images: Iterable,
           points: int = 10, seed: int = 0) -> Dict[str, np.ndarray]:
    """{BN key: (samples, channels) float64 contributions} for the keys with a next layer.

    Args:
      model: the functional model `next_by_key` was found in (`next_layers`).
      next_by_key: {BN key: next op or None}; None keys are skipped.
      images: batches of input images (arrays or tensors), run in inference mode.
      points: sampled output entries per image.
      seed: the sampling's seed.

    Raises:
      ValueError: points < 1, or no image.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"points={points!r} must be an int >= 1 (Luo et al. use 10)")
    wanted = {k: op for k, op in next_by_key.items() if op is not None}
    if not wanted:
        return {}
    probe = keras.Model(model.inputs, [op.node.keras_inputs[0] for op in wanted.values()])
    rng = np.random.default_rng(seed)
    parts = {k: [] for k in wanted}
    for batch in images:
        outs = probe(batch, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for (key, op), x in zip(wanted.items(), outs):
            fn = _conv_parts if isinstance(op.layer, L.Conv2D) else _dense_parts
            parts[key].append(fn(op.layer, np.asarray(x, np.float64), points, rng))
    if not any(parts.values()):
        raise ValueError("images is empty: give at least one batch of input images")
    return {k: np.concatenate(v) for k, v in parts.items()}
