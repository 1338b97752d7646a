"""Precision modes of the Early-Bird search and retrain, in one entry point.

| precision   | model                                   | optimizer            |
| ----------- | --------------------------------------- | -------------------- |
| `fp32`      | unchanged                               | unchanged            |
| `int8`      | tfmot QAT, W8/A8 (`quantize_for_search`) | unchanged            |
| `int8_wage` | QAT W8/A8 + 8-bit gradients and errors  | unchanged            |
| `bf16`      | clone under `mixed_bfloat16`            | unchanged            |
| `fp16`      | clone under `mixed_float16`             | LossScaleOptimizer   |

Search may use any of them, retrain `fp32` or `int8` (an int8 retrain ends in a QAT
model that converts to a fully-integer TFLite model). FLOPs are counted as in fp32
whatever the mode (as the paper does); `PreparedModel.spec` states each phase's
precision for the run report.

Example:

    prepared = eb_tf.prepare_for_precision(model, "int8_wage")
    optimizer = prepared.wrap_optimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    prepared.model.compile(optimizer=optimizer, loss=...)
    ...
    float_model = eb_tf.strip_precision(prepared.model)   # to draw/prune the ticket
"""
import dataclasses
from typing import Any, Callable, Dict

from eb_tf.compat import (Keras3Functional, check_model, check_tf_keras_model, is_keras3,
                          keras, keras3)
from eb_tf.quantization.modes import (BITS, POLICIES, RETRAIN_PRECISIONS, SEARCH_PRECISIONS,
                                      is_quantized, precision_spec)

__all__ = ["SEARCH_PRECISIONS", "RETRAIN_PRECISIONS", "PreparedModel", "precision_spec",
           "with_policy", "prepare_for_precision", "strip_precision"]

@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A model set up for one precision mode.

    Attributes:
      model: the model to compile and train (a new model unless precision is fp32).
      wrap_optimizer: call it on the optimizer before `compile` (LossScaleOptimizer
        for fp16, identity otherwise).
      spec: `precision_spec(precision)`, for the run report.
    """
    model: Any
    wrap_optimizer: Callable[[Any], Any]
    spec: Dict[str, Any]


def _identity(optimizer):
    return optimizer


def _loss_scale(optimizer):
    scaler = (keras3.optimizers if is_keras3(optimizer) else keras.mixed_precision
              ).LossScaleOptimizer
    return optimizer if isinstance(optimizer, scaler) else scaler(optimizer)


def with_policy(model, policy: str):
    """A copy of `model` (weights copied) whose layers use the dtype policy `policy`.

    The layers producing the model's outputs (the logits) stay float32; variables,
    BN gammas included, are float32 under every mixed policy. Nested models are
    cloned recursively.

    Args:
      model: a built functional or Sequential model (tf_keras or Keras 3).
      policy: "mixed_bfloat16", "mixed_float16" or "float32" (back to full precision).

    Example:

        bf16_model = eb_tf.quantization.precision.with_policy(model, "mixed_bfloat16")
    """
    where = "eb_tf.quantization.precision.with_policy"
    k = check_model(model, where)
    allowed = ("mixed_bfloat16", "mixed_float16", "float32")
    if policy not in allowed:
        raise ValueError(f"{where}: policy={policy!r} is not supported; use one of {allowed}.")
    if not (isinstance(model, (k.Sequential, Keras3Functional)) or
            getattr(model, "_is_graph_network", False)):
        raise ValueError(f"{where}: model {model.name!r} is a subclassed model; set the "
                         "policy in its constructor instead (keras.mixed_precision).")
    if is_quantized(model):
        raise ValueError(f"{where}: model {model.name!r} is a QAT model; mixed precision "
                         "and fake quantisation do not combine. Strip it first "
                         "(eb_tf.strip_quantization).")
    outputs = set(model.output_names)              # the layers producing the logits

    def clone(layer):
        if isinstance(layer, k.Model):
            return with_policy(layer, policy)
        if not isinstance(layer, k.layers.Layer) or isinstance(layer, k.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())  # Keras 3 ops, inputs
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name in outputs else policy
        return layer.__class__.from_config(config)

    new = k.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    return new


def prepare_for_precision(model, precision: str, phase: str = "search") -> PreparedModel:
    """Sets `model` up to train in `precision` during `phase` (search or retrain).

    Args:
      model: a built float32 functional or Sequential model (the dense model for the
        search, the drawn ticket for the retrain), with its regularisers (`add_bn_l1`,
        `add_weight_decay`) already added; tf_keras or Keras 3 (the int8 modes:
        tf_keras only, tfmot's limit).
      precision: one of SEARCH_PRECISIONS for phase "search", RETRAIN_PRECISIONS for
        phase "retrain".
      phase: "search" or "retrain".

    Returns:
      A `PreparedModel(model, wrap_optimizer, spec)`.

    Raises:
      ValueError: unknown phase or precision (with the allowed ones), or a model that
        the mode cannot handle (see `quantize_for_search`).

    Example:

        prepared = eb_tf.prepare_for_precision(ticket, "int8", phase="retrain")
        prepared.model.compile(optimizer=prepared.wrap_optimizer(opt), loss=...)
    """
    where = "eb_tf.prepare_for_precision"
    check_model(model, where)
    allowed = {"search": SEARCH_PRECISIONS, "retrain": RETRAIN_PRECISIONS}
    if phase not in allowed:
        raise ValueError(f"{where}: phase={phase!r} is not supported; use 'search' or "
                         "'retrain'.")
    if precision not in allowed[phase]:
        raise ValueError(f"{where}: precision={precision!r} is not supported for phase "
                         f"{phase!r}; use one of {allowed[phase]}.")
    spec = precision_spec(precision)
    if precision in BITS:
        check_tf_keras_model(model, f"{where}(precision={precision!r})")  # tfmot: tf_keras
        from eb_tf.quantization import qat  # tfmot: only for the int8 modes
        return PreparedModel(qat.quantize_for_search(model, **BITS[precision]),
                             _identity, spec)
    if precision in POLICIES:
        wrap = _loss_scale if precision == "fp16" else _identity
        return PreparedModel(with_policy(model, POLICIES[precision]), wrap, spec)
    return PreparedModel(model, _identity, spec)


def strip_precision(model):
    """The float32 model of any prepared model: QAT stripped, mixed policies dropped.

    A model that is already plain float32 is returned unchanged.

    Example:

        float_model = eb_tf.strip_precision(prepared.model)
        ticket = eb_tf.prune(float_model, masks)
    """
    check_model(model, "eb_tf.strip_precision")
    if is_quantized(model):
        from eb_tf.quantization import qat  # tfmot: only a QAT model needs it
        return qat.strip_quantization(model)
    if any(layer.dtype_policy.name != "float32" for layer in _all_layers(model)):
        return with_policy(model, "float32")
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, (keras.Model, keras3.Model)):
            yield from _all_layers(layer)
