"""Which handler a layer call gets, and why a layer the pruner cannot map is a barrier.

`resolve(op, graph)` returns the `eb_tf.pruning.handlers.Handler` of one call, after the
checks a handler alone cannot make: the call's shapes, its data format, grouped
convolutions (`groups` = channels is depthwise-like, other counts keep equal groups),
the axis of a BN or LayerNormalization, Reshapes that keep the last axis, and the TF
functions tf_keras records as `TFOpLambda` layers or the Keras 3 ops (`x * 2.0` records
`keras.src.ops.numpy.Multiply`, whose node is named like a `Multiply` layer: they are
told apart by class): elementwise ops on one tensor and scalar or per-channel
constants are per-channel; on two or more tensors they are joins like Add/Multiply. A call the pruner cannot map raises `UnmappedLayerError`, which
`eb_tf.prune` turns into a barrier: the layer reads every channel it is given and
keeps its outputs' widths, so the spaces it reads keep all their channels.

Example:

    from eb_tf.pruning import dispatch, graph
    g = graph.build(model)
    for op in g.ops:
        try:
            print(op.layer.name, dispatch.resolve(op, g).kind)
        except dispatch.UnmappedLayerError as e:
            print(op.layer.name, "barrier:", e.reason)
"""
from typing import Optional

import numpy as np

from eb_tf.compat import (BN_CLASSES, KERAS3_OPS, Keras3Operation, TFOpLambda, is_keras3_operation,
                          keras, keras3, layer_classes)
from eb_tf.pruning import graph as graph_lib
from eb_tf.pruning import handlers

__all__ = ["UnmappedLayerError", "resolve", "join_op", "tf_op_name", "UNARY_TF_OPS",
           "BINARY_TF_OPS"]

_SOFTMAX = ("softmax", "log_softmax")
# TF functions that act on each element alone (zero-preservation is measured, not listed).
UNARY_TF_OPS = frozenset((
    "relu", "relu6", "elu", "selu", "gelu", "leaky_relu", "sigmoid", "tanh",
    "softplus", "softsign", "swish", "silu", "hard_sigmoid", "abs", "negative", "neg",
    "square", "sqrt", "rsqrt", "exp", "log", "log1p", "cast", "identity", "clip_by_value",
    "erf", "sin", "cos", "round", "floor", "ceil", "sign", "reciprocal", "scalar_mul",
    "stop_gradient"))
# Elementwise functions of two operands: per-channel with a constant, joins on tensors.
BINARY_TF_OPS = frozenset((
    "add", "subtract", "multiply", "truediv", "divide", "floordiv", "maximum", "minimum",
    "pow", "squared_difference", "multiply_no_nan", "divide_no_nan", "mod", "floormod",
    "rsub", "radd", "rmul", "rtruediv"))
UNARY_TF_OPS = UNARY_TF_OPS | {"hard_silu", "hard_swish", "clip"}
# Keras 3 op class -> its function's name (keras.src.ops.numpy.TrueDivide -> "truediv").
_KERAS3_ALIASES = {"true_divide": "truediv", "absolute": "abs", "power": "pow",
                   "floor_divide": "floordiv", "divide_no_nan": "divide_no_nan"}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


KERAS3_OP_NAMES = {
    cls: _KERAS3_ALIASES.get(_snake(cls.__name__), _snake(cls.__name__))
    for module in KERAS3_OPS for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, Keras3Operation)
    and cls.__module__ == module.__name__ and not issubclass(cls, keras3.layers.Layer)}
_TF_OP = handlers.Handler("unary")
_TF_OP_PER_CHANNEL = handlers.Handler("unary", stateful=True)
_JOIN_OPS = {cls: name.lower() for name in ("Add", "Subtract", "Multiply", "Average",
                                            "Maximum", "Minimum")
             for cls in layer_classes(name)}
_WRAPPERS = (keras.layers.Wrapper, keras3.layers.Wrapper)
_ACTIVATION, _CONCATENATE = layer_classes("Activation"), layer_classes("Concatenate")
_RESHAPE, _NORMALIZATION = layer_classes("Reshape"), layer_classes("Normalization")
_LAYER_NORMS = layer_classes("LayerNormalization", "UnitNormalization")


class UnmappedLayerError(ValueError):
    """A layer call the pruner cannot map; `reason` says why, `layer` is the layer."""

    def __init__(self, message: str, layer, reason: str):
        super().__init__(message)
        self.layer, self.reason = layer, reason


def tf_op_name(layer) -> Optional[str]:
    """The function of a `TFOpLambda` layer, last component ("math.multiply" ->
    "multiply"), or of a Keras 3 op (by class: `keras.src.ops.numpy.Multiply` ->
    "multiply"); None for layers."""
    if is_keras3_operation(layer):
        return KERAS3_OP_NAMES.get(type(layer), _snake(type(layer).__name__))
    if type(layer) is not TFOpLambda:  # pylint: disable=unidiomatic-typecheck
        return None
    return (layer.symbol or getattr(layer.function, "__name__", "")).split(".")[-1]


def _function_label(layer) -> str:
    """"tf.math.multiply" (tf_keras) or "keras.ops.multiply" (Keras 3), for messages."""
    if is_keras3_operation(layer):
        return f"keras.ops.{tf_op_name(layer)}"
    return f"tf.{layer.symbol or tf_op_name(layer)}"


def join_op(layer) -> str:
    """The elementwise rule of a join layer: add, multiply, ... ("other" if unknown)."""
    name = tf_op_name(layer)
    if name is not None:
        return {"truediv": "divide", "radd": "add", "rmul": "multiply"}.get(name, name)
    return _JOIN_OPS.get(type(layer), "other")


def _unmapped(layer, why: str, where: str, supported: str = ""):
    return UnmappedLayerError(
        f"{where}: layer {layer.name!r} ({type(layer).__name__}) {why}{supported}",
        layer, why)


def _tf_op(op, graph, where) -> handlers.Handler:
    """A TFOpLambda call: per-channel (one tensor, constants) or a join (tensors)."""
    layer, name, label = op.layer, tf_op_name(op.layer), _function_label(op.layer)
    if name not in UNARY_TF_OPS | BINARY_TF_OPS:
        raise _unmapped(layer, f"applies {label}, which is not an elementwise function "
                        "the pruner knows", where)
    if len(set(op.inputs)) >= 2 or (len(op.inputs) == 2 and name in BINARY_TF_OPS):
        return handlers.JOIN
    channels = graph.tensors[op.inputs[0]].channels
    args, kwargs = graph_lib.call_values(op.node)
    for value in list(args) + list(kwargs.values()):
        if hasattr(value, "_keras_history") or isinstance(value, (str, bool)) \
                or value is None:
            continue
        try:
            shape = np.shape(value)          # arrays, tensors and Python lists alike
        except ValueError:                   # a ragged list: not an elementwise constant
            raise _unmapped(layer, f"applies {label} to an operand of no array "
                            "shape", where) from None
        if shape and shape[-1] not in (1, channels):
            raise _unmapped(layer, f"applies {label} with a constant of shape "
                            f"{shape}, which mixes the {channels} channels", where)
        if shape and shape[-1] == channels and channels > 1:
            return _TF_OP_PER_CHANNEL       # the rebuild slices those constants
    return _TF_OP


def resolve(op, graph, where: str = "eb_tf.prune") -> handlers.Handler:
    """The handler for one layer call.

    Raises:
      UnmappedLayerError: (a ValueError) naming the layer, its class and why, for a
        layer the pruner cannot map: an unregistered type (the message lists the
        supported ones), several outputs, unknown channel counts, channels_first data,
        a depth multiplier other than 1, a BN or LayerNormalization over other axes, a
        Reshape that mixes channels, a join of unequal widths, an unknown TF function.
      ValueError: for a tfmot wrapper (strip it first: `eb_tf.strip_quantization`).
    """
    layer = op.layer
    if isinstance(layer, _WRAPPERS):
        raise ValueError(f"{where}: layer {layer.name!r} ({type(layer).__name__}) is a "
                         "wrapper; strip tfmot wrappers first (eb_tf.strip_quantization) "
                         "and prune the plain model.")
    if graph_lib.is_model(layer):
        calls = len(graph.calls[id(layer)])
        raise _unmapped(layer, f"is a nested model called {calls} times (the pruner "
                        "looks inside nested models called once)", where)
    handler = handlers.REGISTRY.get(type(layer))
    if handler is None and (type(layer) is TFOpLambda  # pylint: disable=unidiomatic-typecheck
                            or is_keras3_operation(layer)):
        handler = _tf_op(op, graph, where)
    if handler is None:
        raise _unmapped(layer, "is not supported by the pruner (it cannot tell how the "
                        "layer maps channels)", where, f". Supported: "
                        f"{handlers.supported_types()}; add others with "
                        "eb_tf.pruning.handlers.register.")
    shapes = [graph.tensors[k].shape for k in op.inputs + op.outputs]
    if len(op.outputs) != 1 or (handler.kind not in ("join", "concat") and
                                len(set(op.inputs)) != 1):
        raise _unmapped(layer, f"is called on {len(op.inputs)} tensors with "
                        f"{len(op.outputs)} outputs; mapped: one input (two or more for "
                        "merge layers) and one output", where)
    if any(s.rank is None or s.rank < 2 or s[-1] is None for s in shapes):
        raise _unmapped(layer, f"has tensors of unknown rank/channels {shapes}; the "
                        "pruner needs static channel counts on the last axis", where)
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _unmapped(layer, "uses data_format='channels_first'; mapped: "
                        "data_format='channels_last'", where)
    c_in, c_out, rank = shapes[0][-1], shapes[-1][-1], shapes[0].rank
    groups = getattr(layer, "groups", 1)
    if groups != 1 and handler.kind == "producer":
        handler = (handlers.DEPTHWISE_CONV if groups == c_in == c_out
                   else handlers.GROUPED_CONV)
    if handler.kind == "unary" and getattr(layer, "depth_multiplier", 1) != 1:
        raise _unmapped(layer, f"has depth_multiplier={layer.depth_multiplier}; mapped: "
                        "depth_multiplier=1", where)
    bn_axes = [int(a) % rank for a in np.atleast_1d(getattr(layer, "axis", -1))]
    if isinstance(layer, BN_CLASSES) and bn_axes != [rank - 1]:
        raise _unmapped(layer, f"normalises axis {bn_axes}; mapped: the last "
                        f"axis ({rank - 1})", where)
    if isinstance(layer, _RESHAPE) and c_in != c_out:
        raise _unmapped(layer, f"mixes channels (last axis {c_in} -> {c_out}); mapped: "
                        "Reshapes keeping the last axis, or Flatten", where)
    if isinstance(layer, _NORMALIZATION) and layer.axis and \
            sorted(a % rank for a in layer.axis) != [rank - 1]:
        raise _unmapped(layer, f"normalises per axes {list(layer.axis)}; mapped: the "
                        "last axis or none", where)
    if handler.kind == "unary" and c_in != c_out:
        raise _unmapped(layer, f"maps {c_in} channels to {c_out}; a per-channel layer "
                        "keeps the width", where)
    if isinstance(layer, _ACTIVATION) and getattr(layer.activation, "__name__", "") in _SOFTMAX:
        return handlers.BARRIER
    if isinstance(layer, _CONCATENATE) and layer.axis % rank != rank - 1:
        return handlers.JOIN
    if isinstance(layer, _LAYER_NORMS):
        axes = np.atleast_1d(layer.axis) % rank
        if list(axes) != [rank - 1]:
            raise _unmapped(layer, f"normalises axes {list(axes)}; mapped: the last axis "
                            "only", where)
    if handler.kind == "join":
        channels = [s[-1] for s in shapes]
        if any(c not in (1, channels[-1]) for c in channels[:-1]):
            raise _unmapped(layer, f"joins tensors of {channels[:-1]} channels; mapped: "
                            "equal channel counts (or 1, broadcast)", where)
    return handler
