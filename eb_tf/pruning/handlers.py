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
- `barrier`: reads all channels and keeps its width (softmax, LayerNormalization).

Unknown layers raise a ValueError naming the layer, its class and the supported types;
`register(cls, handler)` adds a type.

Example:

    from eb_tf.pruning import handlers
    h = handlers.resolve(op, graph)        # raises for unsupported layers
    new_w = handlers.slice_weights(h, layer, weights, p_in, a_out, channels)
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from eb_tf.compat import BatchNormalizationBase, keras
from eb_tf.pruning.channel_select import ChannelSelect

__all__ = ["Handler", "REGISTRY", "register", "resolve", "supported_types", "slice_weights",
           "new_config", "weight_name"]

L = keras.layers
KINDS = ("unary", "producer", "join", "concat", "flatten", "select", "barrier")
_SOFTMAX = ("softmax", "log_softmax")


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
    """
    kind: str
    channel_weights: Tuple[Tuple[str, int], ...] = ()
    in_weights: Tuple[Tuple[str, int], ...] = ()
    out_weights: Tuple[Tuple[str, int], ...] = ()
    width_key: Optional[str] = None
    const: str = "eval"
    foldable: Callable = lambda layer: False
    stateful: bool = False


REGISTRY: Dict[type, Handler] = {}


def register(layer_cls: type, handler: Handler) -> None:
    """Registers (or replaces) the handler of a layer class (exact type match)."""
    if handler.kind not in KINDS:
        raise ValueError(f"register: kind must be one of {KINDS}, got {handler.kind!r}")
    REGISTRY[layer_cls] = handler


def supported_types() -> str:
    """The supported layer class names, sorted, comma separated."""
    return ", ".join(sorted({c.__name__ for c in REGISTRY} | {"Model (nested functional)"}))


def _same(*classes):
    for c in classes:
        register(c, Handler("unary", const="same"))


_same(L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
      L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.Identity,
      L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
      L.AveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
      L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
      L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)
register(L.Reshape, Handler("unary", const="same", stateful=True))
for _c in (L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation, L.ZeroPadding1D,
           L.ZeroPadding2D, L.ZeroPadding3D):
    register(_c, Handler("unary"))
register(L.PReLU, Handler("unary", channel_weights=(("alpha", -1),), stateful=True))
for _c in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    register(_c, Handler("unary", channel_weights=(("depthwise_kernel", -2), ("bias", 0)),
                         stateful=True))
_BN = Handler("unary", const="bn", stateful=True, channel_weights=(
    ("gamma", 0), ("beta", 0), ("moving_mean", 0), ("moving_variance", 0)))
for _c in (L.BatchNormalization, L.experimental.SyncBatchNormalization, BatchNormalizationBase):
    register(_c, _BN)


def _one_by_one(layer):
    return all(k == 1 for k in layer.kernel_size)


for _c in (L.Conv1D, L.Conv2D, L.Conv3D):
    register(_c, Handler("producer", in_weights=(("kernel", -2),),
                         out_weights=(("kernel", -1), ("bias", 0)), width_key="filters",
                         foldable=_one_by_one, stateful=True))
for _c in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    register(_c, Handler("producer", in_weights=(("kernel", -1),),
                         out_weights=(("kernel", -2), ("bias", 0)), width_key="filters",
                         stateful=True))
register(L.Dense, Handler("producer", in_weights=(("kernel", 0),),
                          out_weights=(("kernel", 1), ("bias", 0)), width_key="units",
                          foldable=lambda layer: True, stateful=True))
for _c in (L.SeparableConv1D, L.SeparableConv2D):   # pointwise rows: see slice_weights
    register(_c, Handler("producer", in_weights=(("depthwise_kernel", -2),),
                         out_weights=(("pointwise_kernel", -1), ("bias", 0)),
                         width_key="filters", stateful=True))
for _c in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    register(_c, Handler("join"))
register(L.Concatenate, Handler("concat"))
register(L.Flatten, Handler("flatten"))
register(ChannelSelect, Handler("select", stateful=True))
for _c in (L.Softmax, L.LayerNormalization, L.UnitNormalization):
    register(_c, Handler("barrier"))
_BARRIER = Handler("barrier")
_JOIN = Handler("join")


def weight_name(variable) -> str:
    """The short name of a layer weight: `conv/kernel:0` -> `kernel`."""
    return variable.name.split("/")[-1].split(":")[0]


def _unsupported(layer, why: str, where: str):
    return ValueError(
        f"{where}: layer {layer.name!r} ({type(layer).__name__}) {why}")


def resolve(op, graph, where: str = "eb_tf.prune") -> Handler:
    """The handler for one layer call, after checking that the pruner supports it.

    Raises:
      ValueError: naming the layer and its class, for an unknown layer type (with the
        supported types), channels_first data, grouped convolutions, a depth multiplier
        other than 1, a BN over a non-last axis, or a Reshape that mixes channels.
    """
    layer = op.layer
    handler = REGISTRY.get(type(layer))
    if handler is None:
        hint = (" Strip tfmot wrappers first (eb_tf.strip_quantization)."
                if isinstance(layer, keras.layers.Wrapper) else "")
        raise _unsupported(layer, "is not supported by the pruner: it cannot tell how the "
                           f"layer maps channels.{hint} Supported: {supported_types()}; "
                           "add others with eb_tf.pruning.handlers.register.", where)
    if len(op.outputs) != 1 or (handler.kind not in ("join", "concat") and len(op.inputs) != 1):
        raise _unsupported(layer, f"is called on {len(op.inputs)} tensors with "
                           f"{len(op.outputs)} outputs; supported: one input (two or more "
                           "for merge layers) and one output.", where)
    shapes = [graph.tensors[k].shape for k in op.inputs + op.outputs]
    if any(s.rank is None or s.rank < 2 or s[-1] is None for s in shapes):
        raise _unsupported(layer, f"has tensors of unknown rank/channels {shapes}; the "
                           "pruner needs static channel counts on the last axis.", where)
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "uses data_format='channels_first'; the pruner supports "
                           "data_format='channels_last' only.", where)
    if getattr(layer, "groups", 1) != 1:
        raise _unsupported(layer, f"is a grouped convolution (groups={layer.groups}); "
                           "supported: groups=1.", where)
    if handler.kind == "unary" and getattr(layer, "depth_multiplier", 1) != 1:
        raise _unsupported(layer, f"has depth_multiplier={layer.depth_multiplier}; "
                           "supported: depth_multiplier=1.", where)
    rank = shapes[0].rank
    if isinstance(layer, BatchNormalizationBase) and list(layer.axis) != [rank - 1]:
        raise _unsupported(layer, f"normalises axis {list(layer.axis)}; supported: the "
                           f"last axis ({rank - 1}).", where)
    if isinstance(layer, L.Reshape) and shapes[0][-1] != shapes[-1][-1]:
        raise _unsupported(layer, f"mixes channels (last axis {shapes[0][-1]} -> "
                           f"{shapes[-1][-1]}); supported: Reshapes keeping the last axis, "
                           "or Flatten.", where)
    if isinstance(layer, L.Activation) and getattr(layer.activation, "__name__", "") in _SOFTMAX:
        return _BARRIER
    if isinstance(layer, L.Concatenate) and layer.axis % rank != rank - 1:
        return _JOIN
    if isinstance(layer, (L.LayerNormalization, L.UnitNormalization)):
        axes = np.atleast_1d(layer.axis) % rank
        if list(axes) != [rank - 1]:
            raise _unsupported(layer, f"normalises axes {list(axes)}; supported: the last "
                               "axis only.", where)
    if handler.kind == "join":
        channels = [s[-1] for s in shapes]
        if any(c not in (1, channels[-1]) for c in channels[:-1]):
            raise _unsupported(layer, f"joins tensors of {channels[:-1]} channels; "
                               "supported: equal channel counts (or 1, broadcast).", where)
    return handler


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


def new_config(handler: Handler, layer, p_in, a_out, select=None, fold_bias=False) -> dict:
    """The layer's config for the pruned widths (`select`: new ChannelSelect indices)."""
    config = layer.get_config()
    if handler.kind == "producer":
        config[handler.width_key] = int(len(a_out))
        if fold_bias:
            config["use_bias"] = True
    elif isinstance(layer, L.Reshape) and config["target_shape"][-1] not in (-1, None):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(len(p_in)),)
    elif handler.kind == "select":
        config["indices"] = [int(i) for i in select]
    return config
