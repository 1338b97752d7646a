"""The pruner's registry: one small handler per layer type (the Torch-Pruning design).

A handler says how a layer relates channels (its `kind`) and how to slice its weights
and config when channels go:

- `unary`: per-channel, output channel c comes from input channel c (BN, activations,
  pooling, padding, dropout, depthwise conv, Reshape keeping the last axis, ...);
- `producer`: reads all input channels, makes a new channel space (Conv*, Dense,
  SeparableConv*, Conv*Transpose);
- `join`: elementwise over inputs of one layout (Add, Multiply, ..., Concatenate on a
  non-channel axis); `concat`: Concatenate on the channel axis (offsets);
- `flatten`: Flatten (channel c -> units (s, c)); `select`: `ChannelSelect`;
- `barrier`: reads all channels and keeps its width (softmax, LayerNormalization, and
  every layer the pruner cannot map: see `eb_tf.pruning.dispatch`).

Grouped convolutions are producers with `groups=True` (equal channels per group), or,
with one channel per group, unary (depthwise). `eb_tf.pruning.dispatch.resolve` picks
the handler of one layer call; `register(cls, handler)` adds a type (exact class).
Every built-in type is registered for both Kerases (tf_keras and Keras 3 classes;
Keras 3's DepthwiseConv keeps its kernel under the name `kernel`); Keras 3 ops such as
`keras.ops.add` are mapped by class in `eb_tf.pruning.dispatch`.

Example: a custom per-channel layer, y = x * scale (one weight per channel):

    from eb_tf.pruning import handlers

    class ChannelScale(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight("scale", shape=(shape[-1],), initializer="ones")
        def call(self, x):
            return x * self.scale

    handlers.register(ChannelScale, handlers.Handler(
        "unary", channel_weights=(("scale", 0),), stateful=True))
    # eb_tf.prune now slices `scale` with the channels it keeps.
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from eb_tf.compat import (BN_CLASSES, CustomScaleLayer, Keras3CustomScaleLayer, keras,
                          keras3, layer_classes)
from eb_tf.pruning.bn_kernel import UnfusedBatchNormalization
from eb_tf.pruning.channel_select import ChannelSelect, Keras3ChannelSelect

__all__ = ["Handler", "REGISTRY", "KINDS", "register", "supported_types", "slice_weights",
           "new_config", "weight_name", "slice_channels", "BARRIER", "JOIN", "GROUPED_CONV",
           "DEPTHWISE_CONV"]

L = keras.layers
_RESHAPE = layer_classes("Reshape")
KINDS = ("unary", "producer", "join", "concat", "flatten", "select", "barrier")


@dataclasses.dataclass(frozen=True)
class Handler:
    """How one layer type maps and slices channels.

    Attributes:
      kind: one of `KINDS`.
      channel_weights: unary: (weight name, axis holding the channel).
      in_weights / out_weights: producer: (weight name, input / output channel axis).
      width_key: producer config key of the output width ("filters", "units").
      const: unary: how a constant input channel propagates: "same" (value unchanged),
        "bn" (the inference affine map) or "eval" (evaluate the layer).
      foldable: producer: whether a constant input channel may be folded into the bias
        (no padding ever reads it: Dense, 1x1 convolutions).
      stateful: whether the weights/config depend on the channels (shared calls must
        then agree).
      channel_config: unary: config keys that may hold one value per channel (sliced
        when they do: Rescaling's scale/offset, Normalization's mean/variance).
      width_keys: unary: config keys set to the new width (a depthwise-like grouped
        Conv's filters and groups).
      groups: producer: a grouped convolution, which keeps as many channels in every
        group, on its input and its output.
    """
    kind: str
    channel_weights: Tuple[Tuple[str, int], ...] = ()
    in_weights: Tuple[Tuple[str, int], ...] = ()
    out_weights: Tuple[Tuple[str, int], ...] = ()
    width_key: Optional[str] = None
    const: str = "eval"
    foldable: Callable = lambda layer: False
    stateful: bool = False
    channel_config: Tuple[str, ...] = ()
    width_keys: Tuple[str, ...] = ()
    groups: bool = False


REGISTRY: Dict[type, Handler] = {}


def register(layer_cls: type, handler: Handler) -> None:
    """Registers (or replaces) the handler of a layer class (exact type match)."""
    if handler.kind not in KINDS:
        raise ValueError(f"register: kind must be one of {KINDS}, got {handler.kind!r}")
    REGISTRY[layer_cls] = handler


def supported_types() -> str:
    """The supported layer class names, sorted, comma separated."""
    extra = {"Model (nested functional)", "TFOpLambda (elementwise ops)", "Conv (groups)",
             "keras.ops (Keras 3 elementwise ops)"}
    return ", ".join(sorted({c.__name__ for c in REGISTRY} | extra))


def _register_all(names, handler):
    """Registers `handler` for the classes called `names` in both Kerases."""
    for cls in layer_classes(*names):
        register(cls, handler)


_register_all((
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"),
    Handler("unary", const="same"))
_register_all(("Reshape",), Handler("unary", const="same", stateful=True))
_register_all(("ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Activation", "ZeroPadding1D",
               "ZeroPadding2D", "ZeroPadding3D"), Handler("unary"))
_register_all(("PReLU",), Handler("unary", channel_weights=(("alpha", -1),), stateful=True))
for _c in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    register(_c, Handler("unary", channel_weights=(("depthwise_kernel", -2), ("bias", 0)),
                         stateful=True))
for _c in (keras3.layers.DepthwiseConv1D, keras3.layers.DepthwiseConv2D):
    register(_c, Handler("unary", channel_weights=(("kernel", -2), ("bias", 0)),
                         stateful=True))
_BN = Handler("unary", const="bn", stateful=True, channel_weights=(
    ("gamma", 0), ("beta", 0), ("moving_mean", 0), ("moving_variance", 0)))
for _c in (L.BatchNormalization, L.experimental.SyncBatchNormalization,
           UnfusedBatchNormalization) + BN_CLASSES:
    register(_c, _BN)


def _one_by_one(layer):
    return all(k == 1 for k in layer.kernel_size)


_register_all(("Conv1D", "Conv2D", "Conv3D"), Handler(
    "producer", in_weights=(("kernel", -2),), out_weights=(("kernel", -1), ("bias", 0)),
    width_key="filters", foldable=_one_by_one, stateful=True))
_register_all(("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), Handler(
    "producer", in_weights=(("kernel", -1),), out_weights=(("kernel", -2), ("bias", 0)),
    width_key="filters", stateful=True))
_register_all(("Dense",), Handler("producer", in_weights=(("kernel", 0),),
                                  out_weights=(("kernel", 1), ("bias", 0)), width_key="units",
                                  foldable=lambda layer: True, stateful=True))
_register_all(("SeparableConv1D", "SeparableConv2D"),   # pointwise rows: see slice_weights
              Handler("producer", in_weights=(("depthwise_kernel", -2),),
                      out_weights=(("pointwise_kernel", -1), ("bias", 0)),
                      width_key="filters", stateful=True))
_register_all(("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"), Handler("join"))
_register_all(("Concatenate",), Handler("concat"))
_register_all(("Flatten",), Handler("flatten"))
for _c in (ChannelSelect, Keras3ChannelSelect):
    register(_c, Handler("select", stateful=True))
for _c in (CustomScaleLayer, Keras3CustomScaleLayer):
    register(_c, Handler("join"))                    # x + scale * branch
_register_all(("Rescaling",), Handler("unary", channel_config=("scale", "offset"),
                                      stateful=True))
_register_all(("Normalization",), Handler(
    "unary", channel_weights=(("mean", -1), ("variance", -1)),
    channel_config=("mean", "variance"), stateful=True))
_register_all(("Softmax", "LayerNormalization", "UnitNormalization"), Handler("barrier"))
BARRIER = Handler("barrier")
JOIN = Handler("join")
# A grouped Conv: one channel per group (in = groups = filters) is a depthwise conv.
GROUPED_CONV = Handler("producer", in_weights=(("kernel", -2),),
                       out_weights=(("kernel", -1), ("bias", 0)), width_key="filters",
                       stateful=True, groups=True)
DEPTHWISE_CONV = Handler("unary", channel_weights=(("kernel", -1), ("bias", 0)),
                         width_keys=("filters", "groups"), stateful=True)


def weight_name(variable) -> str:
    """The short name of a layer weight: `conv/kernel:0` -> `kernel`."""
    return variable.name.split("/")[-1].split(":")[0]


def _take(array, index, axis):
    return np.take(array, np.asarray(index, dtype=np.int64), axis=axis)


def slice_weights(handler: Handler, layer, weights: Dict[str, np.ndarray], p_in, a_out,
                  channels: int, fold: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """The layer's weights for physical input channels `p_in` and outputs `a_out`.

    Args:
      handler: the layer's handler.
      layer: the original layer.
      weights: {short weight name: array} of the original (masked) layer.
      p_in: kept input channel positions (unary and producer layers).
      a_out: kept output channel positions (producers).
      channels: the original input channel count.
      fold: producers: per input channel, the constant to fold into the bias (0 where
        none); only for dropped channels.

    Returns:
      {short weight name: sliced array}.
    """
    out = dict(weights)
    if handler.kind == "unary":
        for name, axis in handler.channel_weights:
            if name in out and out[name].shape[axis] == channels and channels > 1:
                out[name] = _take(out[name], p_in, axis)
        return out
    if handler.kind != "producer":
        return out
    if fold is not None and np.any(fold):
        kernel = out["kernel"]
        flat = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)
        bias = fold.astype(np.float64) @ flat.astype(np.float64)
        out["bias"] = (out.get("bias", 0.0) + bias).astype(kernel.dtype)
    if handler.groups:
        return _slice_grouped(layer, out, p_in, a_out, channels)
    for name, axis in handler.in_weights:
        out[name] = _take(out[name], p_in, axis)
    if "pointwise_kernel" in out:
        mult = layer.depth_multiplier
        rows = (np.asarray(p_in)[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)
        out["pointwise_kernel"] = _take(out["pointwise_kernel"], rows, -2)
    for name, axis in handler.out_weights:
        if name in out:
            out[name] = _take(out[name], a_out, axis)
    return out


def _slice_grouped(layer, out, p_in, a_out, channels):
    """A grouped conv's kernel (k..., C/G, F) for kept inputs p_in and outputs a_out."""
    groups, kernel = layer.groups, out["kernel"]
    c_g, f_g = channels // groups, kernel.shape[-1] // groups
    p_in, a_out = np.asarray(p_in), np.asarray(a_out)
    blocks = []
    for g in range(groups):
        rows = p_in[(p_in >= g * c_g) & (p_in < (g + 1) * c_g)] - g * c_g
        cols = a_out[(a_out >= g * f_g) & (a_out < (g + 1) * f_g)]
        blocks.append(_take(_take(kernel, rows, -2), cols, -1))
    if len({b.shape[-2] for b in blocks}) != 1 or len({b.shape[-1] for b in blocks}) != 1:
        raise RuntimeError(f"internal error: grouped conv {layer.name!r} keeps unequal "
                           "groups")
    out["kernel"] = np.concatenate(blocks, axis=-1)
    if "bias" in out:
        out["bias"] = _take(out["bias"], a_out, 0)
    return out


def slice_channels(value, p_in, channels: int):
    """`value` (an array, tensor or list) with its last axis cut to `p_in` when it holds
    one entry per channel (of `channels` > 1); scalars, None and other shapes unchanged."""
    if value is None or isinstance(value, (str, bool)) or np.ndim(value) == 0 or channels <= 1:
        return value
    array = np.asarray(value)
    return _take(array, p_in, -1) if array.shape[-1] == channels else value


def new_config(handler: Handler, layer, p_in, a_out, select=None, fold_bias=False,
               channels: Optional[int] = None) -> dict:
    """The layer's config for the pruned widths (`select`: new ChannelSelect indices;
    `channels`: the original input width, for per-channel config values)."""
    config = layer.get_config()
    if handler.kind == "unary":
        for key in handler.width_keys:
            config[key] = int(len(p_in))
        for key in handler.channel_config:
            if key in config and channels is not None:
                sliced = slice_channels(config[key], p_in, channels)
                config[key] = sliced.tolist() if sliced is not config[key] else sliced
    if handler.kind == "producer":
        config[handler.width_key] = int(len(a_out))
        if fold_bias:
            config["use_bias"] = True
    elif isinstance(layer, _RESHAPE) and config["target_shape"][-1] not in (-1, None):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(len(p_in)),)
    elif handler.kind == "select":
        config["indices"] = [int(i) for i in select]
    return config
