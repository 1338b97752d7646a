"""Low-precision (QAT) Early-Bird search: fake-quantise a model, and strip it back to float.

`quantize_for_search` wraps every layer with tfmot's QAT wrappers (weights and
activations fake-quantised, any width 2..16), including BatchNorm layers that no
convolution precedes (pre-activation nets), which tfmot alone refuses. BN gammas stay
float, trainable and regularised, so the EarlyBird callback, `channel_masks` and
`bn_layers` read them through the wrappers under the BN's own name. Optionally the
backward pass is quantised too (WAGE-style 8-bit gradients and errors, stochastic
rounding). `strip_quantization` rebuilds the float architecture with the trained
weights, so a ticket searched in low precision is drawn and pruned in float.

Example:

    import eb_tf
    model = eb_tf.add_bn_l1(model, strength=1e-4)
    qmodel = eb_tf.quantize_for_search(model, weight_bits=8, activation_bits=8,
                                       gradient_bits=8, error_bits=8)   # W8/A8/G8/E8
    qmodel.compile(...); qmodel.fit(..., callbacks=[eb_tf.EarlyBird(ratios=(0.5,))])
    float_model = eb_tf.strip_quantization(qmodel)                   # then eb_tf.prune
"""
import tensorflow_model_optimization as tfmot

from eb_tf.compat import check_tf_keras_model, keras
from eb_tf.quantization import configs as quantize_configs
from eb_tf.quantization import gradients as grad_quant
from eb_tf.quantization.configs import quantize_scope
from eb_tf.quantization.modes import is_quantized, is_tfmot_layer

__all__ = ["quantize_for_search", "strip_quantization", "is_quantized", "quantize_scope"]

_Q = tfmot.quantization.keras
_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2")
_PASS_THROUGH = ("QuantizeLayer",)


def _check_graph_model(model, where):
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise ValueError(
            f"{where}: model {model.name!r} is a subclassed model; tfmot QAT needs a "
            "functional or Sequential tf_keras model. Rebuild it with the functional API.")
    if not model.built:
        raise ValueError(f"{where}: model {model.name!r} is not built; call it on data or "
                         "`model.build(input_shape)` first.")


def _check_layers(model, registry, where):
    for layer in model.layers:
        name, cls = layer.name, type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or cls == "QuantizeAnnotate":
            continue   # a user's own quantize_annotate_layer(layer, config) is kept
        if layer.dtype_policy.name != "float32":
            raise ValueError(
                f"{where}: layer {name!r} has dtype policy {layer.dtype_policy.name!r}; "
                "QAT fake-quantises float32 models. Use precision 'int8' or a mixed "
                "policy, not both.")
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"{where}: layer {name!r} is a nested model ({cls}); tfmot cannot quantise "
                "a model inside a model. Flatten it into one functional model first.")
        if isinstance(layer, keras.layers.Lambda):
            raise ValueError(
                f"{where}: layer {name!r} is a Lambda layer, which tfmot cannot wrap (it "
                "would stay float). Replace it by a built-in or custom layer, or annotate "
                "it with tfmot.quantization.keras.quantize_annotate_layer(layer, config).")
        if not registry.supports(layer):
            raise ValueError(
                f"{where}: layer {name!r} of type {cls} has no QAT QuantizeConfig in "
                "tfmot's scheme or eb_tf's (Conv2D, DepthwiseConv2D, Dense, BatchNorm, "
                "ReLU/Activation, pooling, Add, Concatenate, Flatten, Dropout, padding, "
                "ChannelSelect, ...), so it would stay float. Replace it, or annotate it "
                "with tfmot.quantization.keras.quantize_annotate_layer(layer, config).")


def quantize_for_search(model, weight_bits: int = 8, activation_bits: int = 8,
                        gradient_bits=None, error_bits=None):
    """A QAT copy of `model` (weights copied) for a low-precision Early-Bird search.

    Weights and activations are fake-quantised with tfmot (its TFLite 8-bit scheme
    for W8/A8, its n-bit scheme otherwise). BatchNorms keep float, trainable,
    regularised gammas and betas and quantise their outputs. With `gradient_bits` the
    gradients of the fake-quantised weights (kernels), and with `error_bits` the
    errors at the outputs of layers with weights (conv, dense, BN), are quantised in
    the backward pass with stochastic rounding (W8/A8/G8/E8 = WAGE-style search).
    BN gammas/betas, biases and regulariser terms (the L1 on gamma) keep float
    gradients.

    Args:
      model: a built functional or Sequential tf_keras model in float32.
      weight_bits: weight bits in [2, 16].
      activation_bits: activation bits in [2, 16].
      gradient_bits: weight-gradient bits in [2, 16], or None (float gradients).
      error_bits: error bits in [2, 16], or None (float errors).

    Returns:
      A new (uncompiled) functional or Sequential model of QuantizeWrappers.

    Raises:
      ValueError: bits out of range; a subclassed, unbuilt, already quantised or
        mixed-precision model; a layer tfmot cannot wrap (named), e.g. Lambda.

    Example:

        qmodel = eb_tf.quantize_for_search(model)            # W8/A8
        qmodel.compile(optimizer="sgd", loss=...)
    """
    where = "eb_tf.quantize_for_search"
    check_tf_keras_model(model, where)
    grad_quant.check_bits(weight_bits, "weight_bits", where)
    grad_quant.check_bits(activation_bits, "activation_bits", where)
    grad_quant.check_bits(gradient_bits, "gradient_bits", where, allow_none=True)
    grad_quant.check_bits(error_bits, "error_bits", where, allow_none=True)
    _check_graph_model(model, where)
    if is_quantized(model):
        raise ValueError(f"{where}: model {model.name!r} is already quantised (it holds "
                         "tfmot QuantizeWrappers); call eb_tf.strip_quantization first.")
    scheme = quantize_configs.EBQuantizeScheme(weight_bits, activation_bits)
    _check_layers(model, scheme.get_quantize_registry(), where)
    with quantize_scope():
        qmodel = _Q.quantize_apply(_Q.quantize_annotate_model(model), scheme)
    return _rewrap(qmodel, gradient_bits, error_bits)


def _rewrap(qmodel, gradient_bits, error_bits):
    """Clones `qmodel`, wrapping each config in a WageQuantizeConfig if bits are given.

    The clone also fixes what `quantize_apply` leaves behind: its wrappers wrap
    already-built layers, so their kernels are tracked twice and a `.keras` file of
    the model cannot be loaded back ("expected 4 variables, but received 5").
    """
    def wrap(layer):
        if type(layer).__name__ not in _WRAPPERS:
            return layer.__class__.from_config(layer.get_config())
        config = layer.quantize_config
        if gradient_bits is not None or error_bits is not None:
            has_weights = bool(layer.trainable_weights)
            config = quantize_configs.WageQuantizeConfig(
                config, gradient_bits, error_bits if has_weights else None)
        inner = layer.layer.__class__.from_config(layer.layer.get_config())
        return type(layer)(inner, config, name=layer.name)

    with quantize_scope():
        rebuilt = keras.models.clone_model(qmodel, clone_function=wrap)
    for source, target in zip(qmodel.layers, rebuilt.layers):
        _copy_weights(source, target)
    return rebuilt


def _short(variable) -> str:
    """'conv/kernel:0' -> 'kernel'."""
    return variable.name.split(":")[0].split("/")[-1]


def _copy_weights(source, target, where="eb_tf.quantization.qat"):
    """Assigns `source`'s variables to `target`'s, matched by short name within the layer.

    For a tfmot wrapper `source.weights` covers the inner layer's weights even where a
    config replaced the inner attribute (e.g. `kernel`) by its fake-quantised tensor,
    which untracks the variable from the inner layer.
    """
    values = {_short(w): w for w in source.weights}
    for weight in target.weights:
        if _short(weight) not in values:
            raise ValueError(f"{where}: layer {target.name!r} has weight {weight.name!r} "
                             f"that {source.name!r} lacks (it has {sorted(values)}).")
        weight.assign(values[_short(weight)])


def _is_node_ref(x) -> bool:
    return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str)
            and isinstance(x[1], int) and isinstance(x[2], int))


def _rewire(nested, renames, bypass):
    """Rewrites layer references in serialised node data (renames, bypassed layers)."""
    if _is_node_ref(nested):
        ref = list(nested)
        while ref[0] in bypass:
            ref = list(bypass[ref[0]][:3]) + ref[3:]
        ref[0] = renames.get(ref[0], ref[0])
        return ref[:3] + [_rewire(kwargs, renames, bypass) for kwargs in ref[3:]]
    if isinstance(nested, list):
        return [_rewire(x, renames, bypass) for x in nested]
    if isinstance(nested, dict):
        return {k: _rewire(v, renames, bypass) for k, v in nested.items()}
    return nested


def _float_layer_config(wrapper_config):
    inner = dict(wrapper_config["config"]["layer"])
    inner["config"] = dict(inner["config"])
    for key, value in inner["config"].items():
        inner["config"][key] = _float_activation(value)
    inner["name"] = inner["config"]["name"]
    if "inbound_nodes" in wrapper_config:
        inner["inbound_nodes"] = wrapper_config["inbound_nodes"]
    return inner


def _float_activation(value):
    """Unwraps tfmot's serialised activations: QuantizeAwareActivation(a) -> a, and the
    NoOpActivation that its Conv->BN transforms put on the conv -> 'linear'."""
    while isinstance(value, dict) and value.get("class_name") == "QuantizeAwareActivation":
        value = value["config"]["activation"]
    if value == "NoOpActivation" or (isinstance(value, dict)
                                     and value.get("class_name") == "NoOpActivation"):
        return "linear"
    return value


def strip_quantization(qmodel):
    """The float model of a QAT model, with its trained weights (tfmot has no API for it).

    Rebuilds the architecture from the wrapped layers' own configs (the layer names,
    hence the mask keys, are the original ones; input QuantizeLayers are dropped and
    the no-op activations of tfmot's Conv->BN pattern become linear again) and copies
    kernels, biases, gammas, betas and BN moving statistics. Quantiser ranges are
    dropped. In eval mode its outputs match the QAT model up to quantisation error.

    Args:
      qmodel: a functional or Sequential model from `quantize_for_search` (or
        `tfmot.quantization.keras.quantize_model`).

    Returns:
      A new functional or Sequential float32 tf_keras model.

    Raises:
      ValueError: if `qmodel` is no tf_keras graph model or holds no tfmot QAT layers.

    Example:

        float_model = eb_tf.strip_quantization(qmodel)
        ticket = eb_tf.prune(float_model, masks)
    """
    where = "eb_tf.strip_quantization"
    check_tf_keras_model(qmodel, where)
    _check_graph_model(qmodel, where)
    if not is_quantized(qmodel):
        raise ValueError(f"{where}: model {qmodel.name!r} has no tfmot QuantizeWrapper or "
                         "QuantizeLayer; it is already a float model.")
    config = qmodel.get_config()
    renames, bypass, layers = {}, {}, []
    for layer_config in config["layers"]:
        cls = layer_config["class_name"]
        if cls in _PASS_THROUGH:
            if "inbound_nodes" in layer_config:
                nodes = layer_config["inbound_nodes"]
                if len(nodes) != 1 or len(nodes[0]) != 1:
                    raise ValueError(f"{where}: QuantizeLayer {layer_config['name']!r} is "
                                     "shared or has several inputs; cannot bypass it.")
                bypass[layer_config["name"]] = nodes[0][0]
            continue
        if cls in _WRAPPERS:
            inner = _float_layer_config(layer_config)
            renames[layer_config["config"]["name"]] = inner["name"]
            layer_config = inner
        layers.append(layer_config)
    config["layers"] = layers
    for key in ("input_layers", "output_layers"):
        if key in config:
            config[key] = _rewire(config[key], renames, bypass)
    for layer_config in layers:
        if "inbound_nodes" in layer_config:
            layer_config["inbound_nodes"] = _rewire(layer_config["inbound_nodes"],
                                                    renames, bypass)
    with quantize_scope():
        float_model = type(qmodel).from_config(config)
    sources = {}
    for layer in qmodel.layers:
        sources[layer.layer.name if type(layer).__name__ in _WRAPPERS else layer.name] = layer
    for layer in float_model.layers:
        _copy_weights(sources[layer.name], layer, where)
    return float_model
