"""The one place that decides which Keras eb_tf uses: tf_keras (Keras 2).

TensorFlow Model Optimization (tfmot) works only with Keras 2, which TensorFlow
>= 2.16 ships separately as the `tf_keras` package; `tf.keras` is Keras 3 unless
`TF_USE_LEGACY_KERAS=1` was set before TensorFlow first resolved it. Importing
`tf_keras` directly works either way, whether or not the user imported
TensorFlow first, so every other module does

    from eb_tf.compat import keras

and never touches `tf.keras` or `import keras`.

Importing this module leaves the process environment alone (`TF_USE_LEGACY_KERAS`
included) and loads no Keras 3 module. keras-tuner, which imports Keras 3 for its stock
tuners, is loaded here too but only on first use of `compat.keras_tuner` (only
`eb_tf.tuning` uses it), so that this module stays the one place that brings any Keras in.
tensorflow_model_optimization (imported by `eb_tf.quantization` for QAT only) sets
`TF_USE_LEGACY_KERAS=1` when it loads.
"""
import importlib

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "keras_tuner", "tf", "BatchNormalizationBase", "TFOpLambda",
           "CustomScaleLayer", "is_keras3_object", "check_tf_keras_model"]

_KERAS3_HINT = (
    "eb_tf needs a tf_keras (Keras 2) model, because tensorflow-model-optimization only "
    "supports Keras 2. Build the model with `import tf_keras as keras` (or "
    "`from eb_tf.compat import keras`), or set TF_USE_LEGACY_KERAS=1 before importing "
    "TensorFlow so that `tf.keras` is Keras 2.")


def is_keras3_object(obj) -> bool:
    """True if `obj` is a Keras 3 layer or model (`keras.src...` classes)."""
    return any(cls.__module__.startswith("keras.") for cls in type(obj).__mro__)


def check_tf_keras_model(model, where: str = "this function", allow_layer: bool = False):
    """Raises a ValueError unless `model` is a tf_keras Model (or Layer).

    Args:
      model: the object a public function received.
      where: the public function's name, for the message.
      allow_layer: accept any tf_keras Layer, not only Models.

    Returns:
      `model`, unchanged, so the call can be chained.

    Raises:
      ValueError: for a Keras 3 model (with how to build a tf_keras one instead) or an
        object that is no Keras model at all.
    """
    wanted = keras.layers.Layer if allow_layer else keras.Model
    if isinstance(model, wanted):
        return model
    if is_keras3_object(model):
        raise ValueError(
            f"{where} got a Keras 3 model {getattr(model, 'name', model)!r} "
            f"({type(model).__module__}.{type(model).__name__}). {_KERAS3_HINT}")
    raise ValueError(
        f"{where} expects a tf_keras.Model, got {type(model).__module__}."
        f"{type(model).__name__}. {_KERAS3_HINT}")


def __getattr__(name):
    """`compat.keras_tuner`: imported on first use (it loads Keras 3)."""
    if name == "keras_tuner":
        return importlib.import_module("keras_tuner")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Both `BatchNormalization` and `SyncBatchNormalization` derive from this base.
BatchNormalizationBase = keras.layers.BatchNormalization.__mro__[1]
assert BatchNormalizationBase.__name__ == "BatchNormalizationBase", BatchNormalizationBase

# The layer tf_keras inserts for a TF function called on KerasTensors (`x + 3.0`,
# `tf.nn.relu6(x)`), and InceptionResNetV2's residual `x + scale * branch` layer: the
# pruner maps both, and neither is exported under `keras.layers`.
from tf_keras.src.applications.inception_resnet_v2 import CustomScaleLayer  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda  # pylint: disable=g-import-not-at-top,wrong-import-position
