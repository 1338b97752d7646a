"""The one place that imports Keras: tf_keras (Keras 2) and Keras 3, per model.

eb_tf works with models of either Keras, TensorFlow backend:

- tf_keras (Keras 2), which TensorFlow >= 2.16 ships separately; tfmot (QAT, the int8
  search) and keras-tuner's eb_tf tuner work only with it. `keras` below is tf_keras,
  and the zoo (`eb_tf.models`) builds tf_keras models unless asked for Keras 3;
- Keras 3 (`import keras`, and `tf.keras` unless `TF_USE_LEGACY_KERAS=1`): the BN
  search, the EarlyBird callback, the pruner, FLOPs and the TFLite export accept its
  functional and Sequential models too.

Which Keras a model belongs to is decided per model (`keras_for(model)`), never for the
process: importing eb_tf leaves the environment alone (`TF_USE_LEGACY_KERAS` included)
and does not change what `tf.keras` means. A bare `import tensorflow` (2.21) already
loads Keras 3, so importing it here costs nothing. tensorflow_model_optimization
(imported by `eb_tf.quantization.qat` on first use) sets `TF_USE_LEGACY_KERAS=1` when
it loads; keras-tuner loads on first use of `compat.keras_tuner`.

Every other module does `from eb_tf.compat import keras` (tf_keras) and, for Keras 3,
`from eb_tf.compat import keras3` or `keras_for(model)`; none imports Keras itself.

Example:

    from eb_tf import compat
    k = compat.check_model(model, "my_function")      # tf_keras or keras, per model
    inputs = k.Input((8, 8, 3))
"""
import importlib
import json
import zipfile

import keras as keras3
import tensorflow as tf
import tf_keras as keras
from keras.src.models.functional import Functional as Keras3Functional
from keras.src.ops import nn as _keras3_nn
from keras.src.ops import numpy as _keras3_numpy
from keras.src.ops.operation import Operation as Keras3Operation

__all__ = ["keras", "keras3", "keras_tuner", "tf", "BatchNormalizationBase", "TFOpLambda",
           "CustomScaleLayer", "Keras3CustomScaleLayer", "Keras3Functional", "Keras3Operation", "KERAS3_OPS",
           "BN_CLASSES", "is_keras3", "is_keras3_object", "is_keras3_operation",
           "keras_for", "check_model", "check_tf_keras_model", "layer_classes",
           "dtype_name", "keras_version", "saved_keras_version",
           "set_random_seed"]

_KERAS3_HINT = (
    "It needs a tf_keras (Keras 2) model, because tensorflow-model-optimization (and "
    "keras-tuner's stock tuners for eb_tf) support only Keras 2. Build the model with "
    "`import tf_keras as keras` (or `from eb_tf.compat import keras`).")
_ANY_HINT = ("Build it with `import keras` (Keras 3) or `import tf_keras as keras` "
             "(Keras 2), functional or Sequential.")

# Keras 3's elementwise ops (`x * 2.0` records keras.src.ops.numpy.Multiply): the
# namespaces the pruner looks classes up in, by class, never by node name.
KERAS3_OPS = (_keras3_numpy, _keras3_nn)


def is_keras3(obj) -> bool:
    """True if `obj` is a Keras 3 object (layer, model, operation: `keras.src...`)."""
    return any(cls.__module__.startswith("keras.") for cls in type(obj).__mro__)


is_keras3_object = is_keras3     # the 0.3 name


def is_keras3_operation(obj) -> bool:
    """True for a Keras 3 operation that is no layer (`keras.ops.multiply` in a graph)."""
    return isinstance(obj, Keras3Operation) and not isinstance(obj, keras3.layers.Layer)


def keras_version(obj) -> int:
    """2 for a tf_keras object, 3 for a Keras 3 one (ValueError for anything else)."""
    return 3 if keras_for(obj) is keras3 else 2


def keras_for(obj, where: str = "eb_tf"):
    """The Keras module a layer or model belongs to: `tf_keras` or `keras` (Keras 3).

    Example:

        k = compat.keras_for(model)                # tf_keras or keras
        head = k.layers.Dense(10)                  # a layer of the model's own Keras

    Raises:
      ValueError: for an object of neither Keras.
    """
    if isinstance(obj, keras.layers.Layer):
        return keras
    if isinstance(obj, Keras3Operation):
        return keras3
    raise ValueError(f"{where} expects a Keras model, got {type(obj).__module__}."
                     f"{type(obj).__name__}. {_ANY_HINT}")


def check_model(model, where: str = "this function", allow_layer: bool = False):
    """The Keras module (tf_keras or Keras 3) of `model`; a ValueError for a non-model.

    Args:
      model: the object a public function received.
      where: the public function's name, for the message.
      allow_layer: accept any Layer, not only Models.

    Returns:
      `tf_keras` or `keras` (Keras 3): build new layers for this model with it.

    Example:

        keras = compat.check_model(model, "eb_tf.prune")
        clone = keras.models.clone_model(model)

    Raises:
      ValueError: for an object that is no Keras model (or layer) of either Keras.
    """
    for module in (keras, keras3):
        wanted = module.layers.Layer if allow_layer else module.Model
        if isinstance(model, wanted):
            return module
    what = "Keras layer" if allow_layer else "Keras model"
    raise ValueError(f"{where} expects a {what} (tf_keras or Keras 3), got "
                     f"{type(model).__module__}.{type(model).__name__}. {_ANY_HINT}")


def check_tf_keras_model(model, where: str = "this function", allow_layer: bool = False):
    """Raises a ValueError unless `model` is a tf_keras Model (or Layer).

    For the features that stay tf_keras-only: QAT and the int8 search (tfmot), tuning
    (keras-tuner), the pipeline's Keras 2 runs.

    Args:
      model: the object a public function received.
      where: the public function's name, for the message.
      allow_layer: accept any tf_keras Layer, not only Models.

    Returns:
      `model`, unchanged, so the call can be chained.

    Raises:
      ValueError: for a Keras 3 model (one line: why, and how to build a tf_keras one)
        or an object that is no Keras model at all.
    """
    wanted = keras.layers.Layer if allow_layer else keras.Model
    if isinstance(model, wanted):
        return model
    if is_keras3(model):
        raise ValueError(
            f"{where} got a Keras 3 model {getattr(model, 'name', model)!r} "
            f"({type(model).__module__}.{type(model).__name__}). {_KERAS3_HINT}")
    raise ValueError(
        f"{where} expects a tf_keras.Model, got {type(model).__module__}."
        f"{type(model).__name__}. {_KERAS3_HINT}")


def layer_classes(*names: str) -> tuple:
    """The layer classes called `names` in tf_keras and in Keras 3 (those that exist),
    for isinstance checks that hold for both.

    Example:

        isinstance(layer, compat.layer_classes("Add", "Multiply"))
    """
    out = []
    for module in (keras, keras3):
        for name in names:
            cls = getattr(module.layers, name, None)
            if cls is not None and cls not in out:
                out.append(cls)
    return tuple(out)


def dtype_name(dtype) -> str:
    """"float32" for a tf.DType, a NumPy dtype or Keras 3's dtype strings."""
    return tf.as_dtype(dtype).name


def saved_keras_version(path: str) -> int:
    """2 or 3: the major version of the Keras that wrote a `.keras` file (its
    `metadata.json`), so that it is loaded by the same Keras.

    Example:

        loader = compat.keras3.saving if compat.saved_keras_version(path) == 3 \
            else compat.keras.models
        model = loader.load_model(path)

    Raises:
      ValueError: `path` is no `.keras` archive (names the path).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("metadata.json"))
        return 3 if str(meta["keras_version"]).startswith("3.") else 2
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path!r} is no .keras file with a metadata.json ({err}); save "
                         "the model with model.save('name.keras')") from err


def set_random_seed(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow, and Keras 3's own seed generator (what its
    initialisers and dropout draw from), so either Keras builds the same model twice."""
    keras.utils.set_random_seed(seed)
    keras3.utils.set_random_seed(seed)


def __getattr__(name):
    """`compat.keras_tuner`: imported on first use."""
    if name == "keras_tuner":
        return importlib.import_module("keras_tuner")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Both `BatchNormalization` and `SyncBatchNormalization` derive from this base.
BatchNormalizationBase = keras.layers.BatchNormalization.__mro__[1]
assert BatchNormalizationBase.__name__ == "BatchNormalizationBase", BatchNormalizationBase
# Every BatchNormalization class of either Keras (Keras 3's `synchronized=True` is one).
BN_CLASSES = (BatchNormalizationBase, keras3.layers.BatchNormalization)

# The layer tf_keras inserts for a TF function called on KerasTensors (`x + 3.0`,
# `tf.nn.relu6(x)`), and InceptionResNetV2's residual `x + scale * branch` layer: the
# pruner maps both, and neither is exported under `keras.layers`.
from tf_keras.src.applications.inception_resnet_v2 import CustomScaleLayer  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda  # pylint: disable=g-import-not-at-top,wrong-import-position
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer as Keras3CustomScaleLayer  # pylint: disable=g-import-not-at-top,wrong-import-position
