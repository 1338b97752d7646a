"""Per-sample forward cost (MACs) and parameter counts of a Keras model, per layer.

FLOPs follow the Early-Bird / network-slimming convention: one multiply-accumulate
(MAC) = one FLOP, counted for the weight layers (Conv1D/2D/3D incl. groups, their
transposes, DepthwiseConv, SeparableConv, Dense); VGG-16 on CIFAR is 313M. Everything
else (BN, activations, pooling, adds, bias adds, gathers) goes to `.other` as
elementwise counts, never into `.total`. Costs are per sample (the batch dimension is
left out) and read from the graph's static output shapes, so no forward pass is run.
tf_keras and Keras 3 models count the same way (a Keras 3 `keras.ops` call such as
`x * 2.0` is an elementwise op in `.other`, as tf_keras's `TFOpLambda` is).

Example:

    import eb_tf
    flops = eb_tf.count_flops(model)      # FlopsReport(total=313201664, ...)
    print(flops)                          # per-layer table
    params = eb_tf.count_params(model)    # ParamsReport(total=..., trainable=...)

The kept/total channel table of a mask is `eb_tf.summary` (eb_tf/pruning/channel_summary.py).
"""
import dataclasses
from typing import Dict, Tuple

import numpy as np

from eb_tf.compat import BN_CLASSES, check_model, is_keras3, keras, keras3, layer_classes, tf
from eb_tf.pruning import graph

_L, _L3 = keras.layers, keras3.layers
# The bases of every Conv* layer (tf_keras: one; Keras 3: plain, transposed, depthwise
# and separable convolutions each have their own).
_CONV = (_L.Conv2D.__mro__[1], _L3.Conv2D.__mro__[1], _L3.Conv2DTranspose.__mro__[1],
         _L3.DepthwiseConv2D.__mro__[1], _L3.SeparableConv2D.__mro__[1])
_TRANSPOSE = layer_classes("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
_SEPARABLE = (_L.SeparableConv2D.__mro__[1], _L3.SeparableConv2D.__mro__[1])
_DEPTHWISE = (_L.DepthwiseConv2D.__mro__[1], _L3.DepthwiseConv2D.__mro__[1])
_DENSE = layer_classes("Dense")
_TIME_DISTRIBUTED = layer_classes("TimeDistributed")
_WRAPPERS = (_L.Wrapper, _L3.Wrapper)
_POOL = layer_classes("MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
                      "AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
_GLOBAL_POOL = layer_classes("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
                             "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                             "GlobalAveragePooling3D")
_MERGE = layer_classes("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
# Layers that only move data (no arithmetic) or look up rows.
_FREE = layer_classes(
    "InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "Concatenate", "Masking", "Embedding")
_ELEMENTWISE_WEIGHTED = BN_CLASSES + layer_classes(
    "LayerNormalization", "GroupNormalization", "Normalization", "PReLU")
_LINEAR = (keras.activations.linear, keras3.activations.linear)
_MAC_TYPES = "Conv1D/2D/3D (groups), Conv*Transpose, DepthwiseConv*, SeparableConv*, Dense"
_FIXED_SHAPE_HINT = ("FLOPs are per sample and need static shapes: build the model with a fixed "
                     "input shape, e.g. keras.Input(shape=(32, 32, 3)), not None dimensions.")


@dataclasses.dataclass(frozen=True)
class FlopsReport:
    """Per-sample forward cost of a model (1 MAC = 1 FLOP).

    Attributes:
      total: MACs of all Conv/Dense/Depthwise/Separable layers, summed.
      per_layer: {layer key: MACs} of those layers, in graph order (keys are the
        unwrapped layer's name, `outer/inner` inside nested models; a layer called
        several times sums its calls).
      other: {layer key: elementwise op count} of everything else that computes
        (BN, activations, pooling, merges, bias adds, gathers); not in `total`.
    """
    total: int
    per_layer: Dict[str, int]
    other: Dict[str, int]

    @property
    def other_total(self) -> int:
        """Sum of the elementwise counts in `other`."""
        return int(sum(self.other.values()))

    def table(self) -> str:
        """A text table: MACs and share of `total` per MAC layer, then the other ops."""
        width = max([len(n) for n in self.per_layer] + [5])
        lines = [f"{'layer':<{width}} {'MACs':>15} {'share':>7}"]
        for name, macs in self.per_layer.items():
            share = 100.0 * macs / self.total if self.total else 0.0
            lines.append(f"{name:<{width}} {macs:>15,} {share:>6.1f}%")
        lines.append(f"{'total':<{width}} {self.total:>15,} ({_human(self.total)} MACs)")
        lines.append(f"other ops (elementwise, not in total): {self.other_total:,} "
                     f"in {len(self.other)} layers")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


@dataclasses.dataclass(frozen=True)
class ParamsReport:
    """Parameter counts of a model (trainable + non-trainable, e.g. BN moving stats).

    Attributes:
      total: all parameters, each variable counted once.
      trainable: the trainable ones.
      per_layer: {layer key: parameters} of the layers that own weights.
    """
    total: int
    trainable: int
    per_layer: Dict[str, int]

    @property
    def non_trainable(self) -> int:
        """`total - trainable`."""
        return self.total - self.trainable

    def table(self) -> str:
        """A per-layer text table of parameter counts."""
        width = max([len(n) for n in self.per_layer] + [5])
        lines = [f"{'layer':<{width}} {'params':>13}"]
        lines += [f"{n:<{width}} {c:>13,}" for n, c in self.per_layer.items()]
        lines.append(f"{'total':<{width}} {self.total:>13,} ({_human(self.total)}; "
                     f"trainable {self.trainable:,}, non-trainable {self.non_trainable:,})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _is_tfmot(layer) -> bool:
    return type(layer).__module__.startswith("tensorflow_model_optimization")


def _unwrap_tfmot(layer):
    """The layer inside tfmot wrappers (QuantizeWrapperV2, PruneLowMagnitude)."""
    while isinstance(layer, _WRAPPERS) and _is_tfmot(layer):
        layer = layer.layer
    return layer


def _is_quantizer(layer) -> bool:
    """tfmot's QuantizeLayer: fake-quant simulation state, gone after conversion."""
    return _is_tfmot(layer) and type(layer).__name__ == "QuantizeLayer"


def _own_weights(layer):
    """The layer's own weights, looking through tfmot wrappers but not their state.

    A QuantizeWrapper moves the quantized kernels out of the inner layer (they are
    listed in its `_weight_vars`); min/max, masks and step counters are skipped.
    """
    moved = []
    while isinstance(layer, _WRAPPERS) and _is_tfmot(layer):
        moved += [entry[0] for entry in getattr(layer, "_weight_vars", ())]
        layer = layer.layer
    return list(layer.weights) + moved


def _has_activation(layer) -> bool:
    """False for a linear activation, also behind tfmot's QuantizeAwareActivation."""
    act = layer.activation
    while _is_tfmot(act) and hasattr(act, "activation"):
        act = act.activation
    return not (act in _LINEAR or type(act).__name__ == "NoOpActivation")


def _numel(variable) -> int:
    return int(np.prod(tuple(variable.shape), dtype=np.int64))


def _size(shape) -> int:
    return int(np.prod(shape[1:], dtype=np.int64))


def _positions(shape, layer) -> int:
    """Spatial positions of a channels-last/first feature map (batch excluded)."""
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return int(np.prod(shape[2:] if first else shape[1:-1], dtype=np.int64))


def _cost(layer, ins, outs) -> Tuple[int, int]:
    """(MACs, other elementwise ops) of one call of `layer` (already unwrapped)."""
    out = outs[0]
    if isinstance(layer, _TIME_DISTRIBUTED):
        return _cost(_unwrap_tfmot(layer.layer), ins, outs)
    if isinstance(layer, _CONV + _DENSE):
        if isinstance(layer, _SEPARABLE):
            kernel_size = _numel(layer.depthwise_kernel) + _numel(layer.pointwise_kernel)
        elif isinstance(layer, _DEPTHWISE):   # Keras 3 names it `kernel`
            kernel = getattr(layer, "depthwise_kernel", None)
            kernel_size = _numel(layer.kernel if kernel is None else kernel)
        else:
            kernel_size = _numel(layer.kernel)
        if isinstance(layer, _TRANSPOSE):        # every input position scatters the kernel
            macs = _positions(ins[0], layer) * kernel_size
        elif isinstance(layer, _DENSE):          # Dense acts on the last axis of any rank
            macs = int(np.prod(out[1:-1], dtype=np.int64)) * kernel_size
        else:                                    # kernel = k... x C_in/groups x C_out
            macs = _positions(out, layer) * kernel_size
        return macs, _size(out) * (int(layer.use_bias) + int(_has_activation(layer)))
    if isinstance(layer, _FREE):
        return 0, 0
    if isinstance(layer, _POOL):
        return 0, _size(out) * int(np.prod(layer.pool_size))
    if isinstance(layer, _GLOBAL_POOL):
        return 0, _size(ins[0])
    if isinstance(layer, _MERGE):
        return 0, _size(out) * (len(ins) - 1)
    # A layer with weights may hide MACs (LSTM, attention, custom): refuse to guess.
    # eb_tf's ChannelSelect gather (pruning.channel_select) is matched by name, not imported.
    if getattr(layer, "weights", None) and not (
            isinstance(layer, _ELEMENTWISE_WEIGHTED)
            or type(layer).__name__.endswith("ChannelSelect")):
        raise ValueError(
            f"eb_tf.count_flops: layer {layer.name!r} ({type(layer).__name__}) has weights but "
            f"no known MAC count; supported weight layers: {_MAC_TYPES}, plus normalisation "
            "layers, PReLU and ChannelSelect (elementwise).")
    return 0, _size(out)   # BN, activations, normalisation, gathers (ChannelSelect), ...


def _static(tensors):
    return [tuple(tf.TensorShape(t.shape).as_list()) for t in tf.nest.flatten(tensors)]


def _calls(model, layer):
    """The nodes (calls) of `layer` that belong to `model`'s graph."""
    if is_keras3(model):
        nodes = graph.graph_model(model)._nodes  # pylint: disable=protected-access
        return [node for i, node in enumerate(layer._inbound_nodes)  # pylint: disable=protected-access
                if f"{id(layer)}_ib-{i}" in nodes]
    return [node for i, node in enumerate(layer._inbound_nodes)  # pylint: disable=protected-access
            if f"{layer.name}_ib-{i}" in model._network_nodes]   # pylint: disable=protected-access


def _operations(model):
    """The model's layers (and, in Keras 3, its `keras.ops` calls), in graph order."""
    if is_keras3(model):
        return graph.graph_model(model).operations
    return model.layers


def _walk_flops(model, prefix, times, macs, other):
    if not graph.is_functional(model):
        hint = ("call it on keras.Input(shape=...) or build it with model.build(input_shape)"
                if isinstance(model, (keras.Sequential, keras3.Sequential)) else
                "rebuild it as a functional or Sequential model")
        raise ValueError(f"eb_tf.count_flops: model {prefix + model.name!r} "
                         f"({type(model).__name__}) has no static layer graph; {hint}. "
                         + _FIXED_SHAPE_HINT)
    for layer in _operations(model):
        inner = _unwrap_tfmot(layer)
        nodes = _calls(model, layer)
        if graph.is_model(inner):
            if nodes:
                _walk_flops(inner, f"{prefix}{inner.name}/", times * len(nodes), macs, other)
            continue
        if _is_quantizer(inner) or isinstance(inner, _FREE):
            continue
        key = prefix + inner.name
        for node in nodes:
            ins, outs = _static(node.input_tensors), _static(node.output_tensors)
            for shape in ins + outs:
                if None in shape[1:]:
                    raise ValueError(f"eb_tf.count_flops: layer {key!r} ({type(inner).__name__}) "
                                     f"has a shape {shape} with unknown dimensions. "
                                     + _FIXED_SHAPE_HINT)
            m, o = _cost(inner, ins, outs)
            if m:
                macs[key] = macs.get(key, 0) + times * m
            if o:
                other[key] = other.get(key, 0) + times * o


def count_flops(model) -> FlopsReport:
    """Per-sample forward MACs of `model` (1 MAC = 1 FLOP), per layer and in total.

    Counts Conv1D/2D/3D (with `groups`), Conv*Transpose, DepthwiseConv* (depth
    multiplier), SeparableConv* (depthwise + pointwise) and Dense on inputs of any rank
    (MACs times the leading non-batch positions). A transposed conv counts its input
    positions times the kernel (the multiplies it really does, as fvcore counts them).
    Other ops are reported in `.other`.
    tfmot wrappers are looked through (a quantized or pruning-wrapped model counts the
    same as its float model; tfmot's QuantizeLayer is skipped), nested models are
    recursed into (keys `outer/inner`, multiplied by how often they are called).

    Args:
      model: a functional or built Sequential model (tf_keras or Keras 3) with static
        input shapes.

    Returns:
      A `FlopsReport`.

    Raises:
      ValueError: for a non-Keras model, a model without a static graph (subclassed,
        unbuilt), unknown (None) non-batch dimensions, or a weight layer of unknown cost.

    Example:

        model = eb_tf.models.build("vgg16", 10, (32, 32, 3))
        eb_tf.count_flops(model).total        # 313,201,664 (313M)
    """
    check_model(model, "eb_tf.count_flops")
    macs, other = {}, {}
    _walk_flops(model, "", 1, macs, other)
    return FlopsReport(int(sum(macs.values())), macs, other)


def count_params(model) -> ParamsReport:
    """Parameters of `model` per layer and in total (trainable and non-trainable).

    Inside tfmot wrappers only the wrapped layer's own weights count (kernel, bias,
    BN statistics), not the quantizer / pruning state (min/max, masks, steps), and
    tfmot's QuantizeLayer counts nothing, so a wrapped model counts as its float model.
    For plain models `total == model.count_params()`. Nested models give `outer/inner`.

    Args:
      model: a built tf_keras or Keras 3 model (any kind).

    Returns:
      A `ParamsReport`.

    Raises:
      ValueError: for a non-Keras model or an unbuilt one.

    Example:

        report = eb_tf.count_params(model)
        print(report.total, report.trainable, report.per_layer["conv1"])
    """
    check_model(model, "eb_tf.count_params")
    if not model.built:
        raise ValueError(f"eb_tf.count_params: model {model.name!r} is not built; call it on "
                         "data or build it with an input shape first.")
    trainable_ids = {id(w) for w in model.trainable_weights}
    seen, per_layer, counts = set(), {}, [0, 0]

    def walk(m, prefix):
        for layer in m.layers:
            inner = _unwrap_tfmot(layer)
            if graph.is_model(inner):
                walk(inner, f"{prefix}{inner.name}/")
                continue
            if _is_quantizer(inner):
                continue
            n = 0
            for w in _own_weights(layer):
                if id(w) not in seen and hasattr(w, "shape"):
                    seen.add(id(w))
                    size = _numel(w)
                    n += size
                    counts[1] += size if id(w) in trainable_ids else 0
            if n:
                per_layer[prefix + inner.name] = n
                counts[0] += n

    walk(model, "")
    return ParamsReport(counts[0], counts[1], per_layer)

