"""The precision modes' names and what each quantises: one place, no tfmot import.

The run config, the pipeline and the bench read these names; `precision` sets a model
up for one of them (importing tensorflow_model_optimization only for the int8 modes).

| precision   | model                                    | optimizer          |
| ----------- | ---------------------------------------- | ------------------ |
| `fp32`      | unchanged                                | unchanged          |
| `int8`      | tfmot QAT, W8/A8 (`quantize_for_search`) | unchanged          |
| `int8_wage` | QAT W8/A8 + 8-bit gradients and errors   | unchanged          |
| `bf16`      | clone under `mixed_bfloat16`             | unchanged          |
| `fp16`      | clone under `mixed_float16`              | LossScaleOptimizer |

Example:

    from eb_tf.quantization import modes
    modes.precision_spec("int8")["weight_bits"]      # 8
    modes.is_quantized(model)                        # any tfmot QAT layer in it?
"""
from typing import Any, Dict

from eb_tf.compat import check_model, keras

__all__ = ["SEARCH_PRECISIONS", "RETRAIN_PRECISIONS", "POLICIES", "BITS", "precision_spec",
           "is_quantized", "is_tfmot_layer"]

SEARCH_PRECISIONS = ("fp32", "int8", "int8_wage", "bf16", "fp16")
RETRAIN_PRECISIONS = ("fp32", "int8", "bf16", "fp16")
POLICIES = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}   # Keras dtype policies
BITS = {"int8": dict(weight_bits=8, activation_bits=8),            # quantize_for_search
        "int8_wage": dict(weight_bits=8, activation_bits=8, gradient_bits=8, error_bits=8)}
_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")


def precision_spec(precision: str) -> Dict[str, Any]:
    """What a precision mode quantises, for the run report (JSON-serialisable)."""
    bits = dict(weight_bits=None, activation_bits=None, gradient_bits=None, error_bits=None)
    bits.update(BITS.get(precision, {}))
    return dict(precision=precision, **bits,
                dtype_policy=POLICIES.get(precision, "float32"),
                loss_scale=precision == "fp16", flops_counted_as="fp32")


def is_tfmot_layer(layer) -> bool:
    """True for tfmot's QuantizeWrapper(V2) and QuantizeLayer (read by class, no import)."""
    return (type(layer).__module__.startswith("tensorflow_model_optimization")
            and type(layer).__name__ in _WRAPPERS)


def is_quantized(model) -> bool:
    """True if `model` holds tfmot QAT layers (QuantizeWrapper or QuantizeLayer); a
    Keras 3 model never does (tfmot is tf_keras only)."""
    if check_model(model, "eb_tf.is_quantized") is not keras:
        return False
    return any(is_tfmot_layer(layer) for layer in model.layers)
