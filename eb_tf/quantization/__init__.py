"""Low-precision search and retrain: precision modes, tfmot QAT wrappers, quantised gradients.

Modules in import order: `modes` (the mode names and what each quantises; no tfmot),
`gradients` (WAGE-style quantised backward pass), `configs` (tfmot QuantizeConfigs for BN
and the gather layer), `qat` (`quantize_for_search`, `strip_quantization`) and
`precision` (`prepare_for_precision`, `strip_precision`: one entry point for every mode).

`configs` and `qat` import tensorflow_model_optimization, which sets
`TF_USE_LEGACY_KERAS=1` in the process environment when it loads (so that `tf.keras` is
Keras 2 from then on, if TensorFlow had not resolved it yet). They load only when a name
of theirs is first used, e.g. `eb_tf.quantize_for_search` or the `int8` modes.

Example:

    from eb_tf import quantization
    prepared = quantization.prepare_for_precision(model, "int8", phase="search")
"""
import importlib

from eb_tf.quantization.modes import RETRAIN_PRECISIONS, SEARCH_PRECISIONS, is_quantized
from eb_tf.quantization.precision import PreparedModel, prepare_for_precision, strip_precision

__all__ = ["SEARCH_PRECISIONS", "RETRAIN_PRECISIONS", "PreparedModel", "prepare_for_precision",
           "strip_precision", "is_quantized", "quantize_for_search", "strip_quantization",
           "quantize_scope"]

_LAZY = {"quantize_for_search": "qat", "strip_quantization": "qat", "quantize_scope": "qat"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
