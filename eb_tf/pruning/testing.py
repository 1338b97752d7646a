"""Test helpers for pruning: random graphs, random BN statistics and masks, liveness.

`random_model(seed)` builds a small random functional model mixing Conv/BN/ReLU
blocks, post- and pre-activation residual adds (with projection shortcuts), DenseNet
concatenations, MobileNet depthwise blocks, squeeze-excite gates (Multiply), pooling
and a Flatten or global-pool Dense head. It returns the channel spaces it built (the
producers whose outputs an Add/Multiply ties together), so a test can check the
pruner against `live_channels`, an independent definition of liveness: channel k of
a space is live iff perturbing the producers' kernel slice k changes the output.

Example:

    from eb_tf.pruning import testing
    model, spaces = testing.random_model(seed=3)
    testing.randomize_bn(model, seed=3)
    masks = testing.random_masks(model, seed=3)
    testing.output_varies(eb_tf.apply_masks(model, masks))   # else prune raises

`random_model(seed, keras=compat.keras3)` builds the same graph in Keras 3 (its
`x + 3.0` and `x * (1 / 6)` are then `keras.ops` calls); the other helpers take models
of either Keras.
"""
from typing import Dict, List, Tuple

import numpy as np

from eb_tf.compat import BN_CLASSES, keras_for, tf
from eb_tf.compat import keras as tf_keras
from eb_tf.sparsity import batchnorm

__all__ = ["random_model", "randomize_bn", "calibrate_bn", "random_masks", "output_varies",
           "live_channels", "data_dependent", "max_rel_error"]


def randomize_bn(model, seed: int = 0) -> None:
    """Random BN gamma, beta, moving mean and variance (in place), all BN layers."""
    rng = np.random.default_rng(seed)
    for ref in batchnorm.bn_layers(model, include_frozen=True):
        bn = ref.layer
        n = bn.moving_mean.shape[0]
        for var, value in ((bn.gamma, rng.uniform(0.5, 1.5, n)), (bn.beta, rng.normal(0, 0.5, n)),
                           (bn.moving_mean, rng.normal(0, 0.5, n)),
                           (bn.moving_variance, rng.uniform(0.5, 2.0, n))):
            if var is not None:
                var.assign(value.astype(np.float32))


def calibrate_bn(model, data, seed: int = 0) -> None:
    """Sets each top-level BN's moving mean/variance near its input's statistics on
    `data` (randomly off by up to ~10% / 25%), in layer order, so that ReLUs behind
    random BNs are neither dead nor always on. Uses the model's current gammas."""
    rng = np.random.default_rng(seed)
    bns = [l for l in model.layers if isinstance(l, BN_CLASSES)]
    if not bns:
        return
    probe = keras_for(model).Model(model.inputs, [bn.input for bn in bns])
    fn = tf.function(lambda t: probe(t, training=False))
    for i, bn in enumerate(bns):
        value = np.asarray(tf.nest.flatten(fn(data))[i], np.float64)
        value = value.reshape(-1, value.shape[-1])
        mean, std = value.mean(axis=0), value.std(axis=0) + 1e-3
        bn.moving_mean.assign((mean + 0.1 * std * rng.standard_normal(mean.size)).astype(np.float32))
        bn.moving_variance.assign((std ** 2 * rng.uniform(0.8, 1.25, mean.size)).astype(np.float32))


def random_masks(model, seed: int = 0, keep: float = 0.5, min_keep: int = 0,
                 dead: float = 0.0) -> Dict[str, np.ndarray]:
    """Independent random keep-masks (probability `keep`), at least `min_keep` per BN;
    with probability `dead` a BN's mask is all-False instead (ignoring `min_keep`)."""
    rng, dead_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    out = {}
    for ref in batchnorm.bn_layers(model):
        mask = rng.random(ref.layer.gamma.shape[0]) < keep
        if mask.sum() < min_keep:
            mask[rng.choice(mask.size, min_keep, replace=False)] = True
        if dead_rng.random() < dead:
            mask[:] = False
        out[ref.key] = mask
    return out


def output_varies(model, seed: int = 0, n: int = 2, tol: float = 0.0) -> bool:
    """Whether `model`'s inference output differs between two random inputs (normal,
    and normal * 4 + 1): a data check of liveness for a single-input model. A masked
    BN channel is an exact 0, so an output the masks make constant is bit-identical
    for both; a live one may move little (behind pooling), hence `tol` = 0."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(model.input_shape[1:])
    xs = [rng.normal(size=shape), 4 * rng.normal(size=shape) + 1]
    a, b = (model(x.astype(np.float32), training=False) for x in xs)
    for ya, yb in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        ya, yb = np.asarray(ya, np.float64), np.asarray(yb, np.float64)
        if np.max(np.abs(ya - yb)) > tol * max(1.0, float(np.max(np.abs(ya)))):
            return True
    return False


def max_rel_error(a, b) -> float:
    """max|a - b| / max(1, max|a|): the pruner's exactness measure."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))


class _Spaces:
    """Union-find over producer names: which producers share a channel space."""

    def __init__(self):
        self.parent = {}

    def new(self, name):
        self.parent[name] = name
        return name

    def find(self, name):
        while self.parent[name] != name:
            name = self.parent[name]
        return name

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)
        return self.find(b)

    def groups(self) -> List[List[str]]:
        out = {}
        for name in self.parent:
            out.setdefault(self.find(name), []).append(name)
        return sorted(out.values())


def random_model(seed: int, blocks: int = 4, input_shape=(8, 8, 3), classes: int = 3,
                 max_width: int = 6, activation: str = "relu",
                 extended: bool = False, keras=None) -> Tuple[object, List[List[str]]]:
    """A random small functional model and its channel spaces (lists of producer names).

    Each block draws from: conv-BN-ReLU, post-activation residual, pre-activation stage
    (raw stem conv, residual blocks with an optional projection shortcut, BN-ReLU
    close), DenseNet concat, depthwise + 1x1 block, squeeze-excite gate, pooling.
    Depthwise convs have no bias and feed a 1x1 conv, so a constant left by a masked
    channel is always foldable; every BN reads a conv output or a post-ReLU tensor.
    `activation="leaky"` uses LeakyReLU(0.2) (zero-preserving, never dead on data), the
    choice for liveness checks; "relu" uses ReLU. `extended=True` adds the blocks of
    keras.applications' newer families: a TF-op hard-swish (`x * relu6(x + 3) / 6`), a
    grouped conv (RegNet), a per-channel Rescaling and a TF-op residual `x + y`.
    `keras` is the Keras module to build with: tf_keras (the default) or Keras 3
    (`eb_tf.compat.keras3`); the same seed gives the same graph in both.
    """
    keras = tf_keras if keras is None else keras
    L = keras.layers  # pylint: disable=invalid-name
    if activation not in ("relu", "leaky"):
        raise ValueError(f"activation must be 'relu' or 'leaky', got {activation!r}")
    rng = np.random.default_rng(seed)

    def act(x):
        return L.ReLU()(x) if activation == "relu" else L.LeakyReLU(0.2)(x)
    sp = _Spaces()
    counter = iter(range(10 ** 6))

    def conv(x, filters, kernel=3, strides=1, use_bias=None):
        name = f"p{next(counter)}"
        bias = bool(rng.integers(2)) if use_bias is None else use_bias
        return L.Conv2D(filters, kernel, strides, padding="same", use_bias=bias, name=name)(x), name

    def cbr(x, filters, **kw):
        x, name = conv(x, filters, **kw)
        return act(L.BatchNormalization()(x)), name

    def width():
        return int(rng.integers(2, max_width + 1))

    inp = keras.Input(input_shape)
    x, name = cbr(inp, width())
    space = sp.new(name)                       # None once x mixes spaces (concat)
    for _ in range(blocks):
        size = x.shape[1]
        choice = rng.choice(["cbr", "post", "pre", "concat", "dw", "se", "pool"] +
                            (["hswish", "group", "rescale", "tf_add"] if extended else []))
        if choice == "group" and x.shape[-1] % 2 == 0:
            groups = 3 if x.shape[-1] % 3 == 0 and rng.random() < 0.5 else 2
            name = f"p{next(counter)}"
            y = L.Conv2D(groups * int(rng.integers(1, 4)), 3, padding="same", groups=groups,
                         use_bias=False, name=name)(x)
            x = act(L.BatchNormalization()(y))
            space = sp.new(name)
        elif choice == "hswish":
            x = L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
        elif choice == "rescale":
            x = L.Rescaling(rng.uniform(0.5, 2.0, x.shape[-1]).tolist())(x)
        elif choice == "tf_add" and space is not None:
            y, b = cbr(x, x.shape[-1])
            space = sp.union(sp.new(b), space)
            x = x + y
        elif choice in ("cbr", "group") or (choice in ("post", "se", "tf_add") and space is None):
            x, name = cbr(x, width(), strides=2 if size >= 4 and rng.random() < 0.3 else 1)
            space = sp.new(name)
        elif choice == "post":
            y, a = cbr(x, width())
            sp.new(a)
            y, b = conv(y, x.shape[-1])
            space = sp.union(sp.new(b), space)
            x = act(L.Add()([x, L.BatchNormalization()(y)]))
        elif choice == "pre":
            x, stem = conv(x, width())
            space = sp.new(stem)
            for _ in range(int(rng.integers(1, 3))):
                pre = act(L.BatchNormalization()(x))
                y, a = cbr(pre, width())
                sp.new(a)
                y, b = conv(y, width() if rng.random() < 0.4 else x.shape[-1])
                sp.new(b)
                if y.shape[-1] != x.shape[-1]:   # projection shortcut from the activation
                    x, c = conv(pre, y.shape[-1], kernel=1)
                    space = sp.union(sp.new(c), b)
                else:
                    space = sp.union(b, space)
                x = L.Add()([x, y])
            x = act(L.BatchNormalization()(x))
        elif choice == "concat":
            y, name = cbr(x, width())
            sp.new(name)
            x, space = L.Concatenate()([x, y]), None
        elif choice == "dw":
            y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x, name = cbr(act(L.BatchNormalization()(y)), width(), kernel=1)
            space = sp.new(name)
        elif choice == "se":
            s = L.GlobalAveragePooling2D()(x)
            s = L.Dense(max(1, x.shape[-1] // 2), name=sp.new(f"p{next(counter)}"))(s)
            name = sp.new(f"p{next(counter)}")
            s = L.Dense(x.shape[-1], activation="sigmoid", name=name)(s)
            x = L.Multiply()([x, L.Reshape((1, 1, x.shape[-1]))(s)])
            space = sp.union(name, space)
        elif size >= 4:
            x = (L.MaxPooling2D(2) if rng.random() < 0.5 else L.AveragePooling2D(2))(x)
    head = sp.new(f"p{next(counter)}")
    x = L.Flatten()(x) if rng.random() < 0.5 else L.GlobalAveragePooling2D()(x)
    out = L.Dense(classes, name=head)(x)
    return keras.Model(inp, out, name=f"random{seed}"), sp.groups()


def live_channels(model, producers: List[str], x, eps: float = 1e-2, seed: int = 0) -> np.ndarray:
    """Per output channel of a space: whether perturbing the kernel slice of its
    producers (relative size `eps`) changes `model`'s inference output on `x`."""
    fn = tf.function(lambda t: model(t, training=False))
    base = fn(x).numpy()
    kernels = [model.get_layer(n).kernel for n in producers]
    rng = np.random.default_rng(seed)
    live = []
    for k in range(kernels[0].shape[-1]):
        saved = [v.numpy() for v in kernels]
        for var, value in zip(kernels, saved):
            new = value.copy()
            scale = float(np.std(value)) + 1e-3
            new[..., k] += eps * scale * rng.standard_normal(new[..., k].shape)
            var.assign(new)
        change = np.max(np.abs(fn(x).numpy() - base))
        for var, value in zip(kernels, saved):
            var.assign(value)
        live.append(change > 1e-7 * max(1.0, float(np.max(np.abs(base)))))
    return np.array(live)


def data_dependent(model, producers: List[str], x, tol: float = 1e-6) -> bool:
    """Whether any producer of a space outputs something that varies with the input.

    A space fed only by dead (constant) channels computes a data-independent tensor:
    perturbing its kernel still changes the output, but `prune` may fold it into the
    consumer's bias, so the liveness count is only an upper bound there.
    """
    outputs = [model.get_layer(n).output for n in producers]
    values = keras_for(model).Model(model.inputs, outputs)(x, training=False)
    for value in tf.nest.flatten(values):
        value = np.asarray(value, np.float64)
        if np.max(np.abs(value - value[:1])) > tol * max(1.0, float(np.max(np.abs(value)))):
            return True
    return False
