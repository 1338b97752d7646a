"""TFLite export of Keras models: float32, float16, dynamic-range and full int8.

`export_tflite` converts a tf_keras or Keras 3 model with
`tf.lite.TFLiteConverter.from_keras_model` (which takes both in TF 2.21) and writes the
flatbuffer atomically, so a failed conversion leaves no file behind. Modes:

| mode | weights | activations | model input/output |
| --- | --- | --- | --- |
| `float32` | float32 | float32 | float32 |
| `float16` | float16 | float32 | float32 |
| `dynamic` | int8 | float32 (int8 matmuls at run time) | float32 |
| `int8` | int8 | int8 (`TFLITE_BUILTINS_INT8` only) | int8 |

`int8` calibrates activation ranges on `representative_data` (an iterable of `[x]`
batches such as `Splits.representative(n)`, a `tf.data.Dataset` of `(x, y)` batches, or
a NumPy array of examples), or takes them from a quantisation-aware-trained model
(tfmot `QuantizeWrapper` layers present), which needs no data. tfmot pruning wrappers
are stripped before conversion.

Example:

    info = eb_tf.export_tflite(model, "out/model.tflite", mode="int8",
                               representative_data=x_train[:200])
    print(info.size_bytes, info.input_dtypes)       # 161234 ('int8',)
"""
import dataclasses
import os
import warnings
from typing import Any, List, Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import check_model, dtype_name, keras, keras3, tf
from eb_tf.export.litert import LiteRTModel

__all__ = ["MODES", "ExportInfo", "export_tflite", "convert_tflite", "is_qat_model",
           "check_mode", "DEFAULT_CALIBRATION_SAMPLES"]

MODES = ("float32", "float16", "dynamic", "int8")
DEFAULT_CALIBRATION_SAMPLES = 200
_TFMOT_QUANT = "tensorflow_model_optimization.python.core.quantization"
_TFMOT_PRUNE = "tensorflow_model_optimization.python.core.sparsity"


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What `export_tflite` wrote.

    Attributes:
      path: the .tflite file.
      mode: one of `MODES`.
      size_bytes: the file size.
      input_dtypes: the model inputs' dtypes in the .tflite (`"int8"` for mode int8).
      output_dtypes: the model outputs' dtypes.
      calibration: `"representative"` (int8 from data), `"qat"` (int8 from a
        quantisation-aware model) or `"none"`.
      calibration_samples: how many examples calibrated the int8 ranges.
    """
    path: str
    mode: str
    size_bytes: int
    input_dtypes: Tuple[str, ...]
    output_dtypes: Tuple[str, ...]
    calibration: str = "none"
    calibration_samples: int = 0

    def to_json(self) -> dict:
        """A JSON-serialisable dict (for report.json)."""
        return dataclasses.asdict(self)


def is_qat_model(model) -> bool:
    """True if `model` holds tfmot quantisation layers (QuantizeWrapper/QuantizeLayer)."""
    return any(_from_tfmot(layer, _TFMOT_QUANT) for layer in _all_layers(model))


def export_tflite(model, path: str, mode: str = "float32", representative_data: Any = None,
                  max_calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> ExportInfo:
    """Converts a tf_keras model to TFLite and writes it atomically to `path`.

    Args:
      model: a tf_keras or Keras 3 model (functional, Sequential, pruned ticket with
        `eb_tf.ChannelSelect` layers, or, tf_keras only, tfmot QAT / pruning-wrapped).
      path: the output file; must end in `.tflite`. Missing folders are created.
      mode: `"float32"`, `"float16"`, `"dynamic"` (int8 weights) or `"int8"` (full
        integer, int8 input and output).
      representative_data: calibration examples for `mode="int8"`: an iterable (or a
        callable returning one) of `[x]` / `(x, y)` batches, or an array of examples.
        Not needed for a QAT model.
      max_calibration_samples: at most this many examples are used for calibration.

    Returns:
      An `ExportInfo` (path, mode, size, input/output dtypes, calibration).

    Raises:
      ValueError: unknown mode, int8 without representative data for a non-QAT model,
        calibration data of the wrong shape, a path that cannot be written, or a
        model the converter rejects. No file is written in any of these cases.

    Example:
      >>> info = eb_tf.export_tflite(ticket, "ticket_f32.tflite")
      >>> info.size_bytes
      2441876
    """
    check_model(model, "eb_tf.export_tflite")
    check_mode(mode)
    _check_writable(path)
    data, calibration = _int8_calibration(model, mode, representative_data,
                                          max_calibration_samples)
    flatbuffer = _convert(model, mode, data, calibration)
    io_utils.atomic_write_bytes(path, flatbuffer)
    inputs, outputs = _io_dtypes(flatbuffer)
    return ExportInfo(path=path, mode=mode, size_bytes=os.path.getsize(path),
                      input_dtypes=inputs, output_dtypes=outputs, calibration=calibration,
                      calibration_samples=len(data or ()))


def convert_tflite(model, mode: str = "float32", representative_data: Any = None,
                   max_calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> bytes:
    """Like `export_tflite`, but returns the flatbuffer bytes instead of writing a file.

    Example:
      >>> flatbuffer = eb_tf.convert_tflite(model, "dynamic")
    """
    check_model(model, "eb_tf.convert_tflite")
    check_mode(mode)
    data, calibration = _int8_calibration(model, mode, representative_data,
                                          max_calibration_samples)
    return _convert(model, mode, data, calibration)


def check_mode(mode: str) -> None:
    """Raises a ValueError naming `mode` unless it is one of `MODES`."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a TFLite export mode; choose one of "
                         f"{', '.join(MODES)}")


def _check_writable(path):
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".tflite"):
        raise ValueError(f"path={path!r} must be a file name ending in .tflite")
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ValueError(f"path={path!r} is a folder; give a .tflite file name")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):           # the nearest folder that exists
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"path={path!r} cannot be written: {parent!r} is not a writable "
                         "folder; choose another output path")


def _int8_calibration(model, mode, representative_data, max_samples):
    if mode != "int8":
        return None, "none"
    qat = is_qat_model(model)
    if representative_data is None:
        if qat:
            return None, "qat"
        raise ValueError(
            f"mode='int8' needs representative_data to calibrate the activation ranges of "
            f"model {model.name!r} (an iterable of [x] batches, e.g. "
            "eb_tf.data.load(...).representative(200), or an array of training examples), "
            "unless the model is quantisation-aware trained (tfmot QuantizeWrapper layers)")
    if not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_calibration_samples={max_samples!r} must be an int >= 1")
    samples = _calibration_samples(model, representative_data, max_samples)
    return samples, "qat" if qat else "representative"


def _calibration_samples(model, data, max_samples) -> List[List[np.ndarray]]:
    """Single-example float batches `[x_1, ..., x_k]` (one per model input)."""
    specs = [(tuple(t.shape[1:]), dtype_name(t.dtype)) for t in model.inputs]
    if callable(data) and not isinstance(data, np.ndarray):
        data = data()
    if isinstance(data, (np.ndarray, tf.Tensor)):
        data = [[data]]                     # one "batch" holding every example
    samples = []
    for element in data:
        if isinstance(element, dict):
            raise ValueError("representative_data yields dicts; yield [x] lists or (x, y) "
                             "tuples of arrays instead")
        parts = list(element) if isinstance(element, (list, tuple)) else [element]
        if len(parts) < len(specs):
            raise ValueError(f"representative_data yields {len(parts)} array(s) per batch; "
                             f"model {model.name!r} has {len(specs)} input(s)")
        arrays = []
        for i, ((shape, dtype), part) in enumerate(zip(specs, parts)):
            x = np.asarray(part, dtype=dtype)
            if x.ndim == len(shape):
                x = x[None]
            if x.ndim != len(shape) + 1 or any(
                    s is not None and s != g for s, g in zip(shape, x.shape[1:])):
                raise ValueError(
                    f"representative_data batch for input {i} has shape {x.shape}; model "
                    f"{model.name!r} expects (batch,) + {shape}")
            arrays.append(x)
        for row in range(len(arrays[0])):
            samples.append([a[row:row + 1] for a in arrays])
            if len(samples) >= max_samples:
                return samples
    if not samples:
        raise ValueError("representative_data is empty; give at least one example")
    return samples


def _convert(model, mode, samples, calibration) -> bytes:
    model = _strip_pruning(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        if samples is not None:
            converter.representative_dataset = lambda: iter(samples)
        if calibration == "representative":
            # A QAT graph carries its own ranges; restricting its ops here would make the
            # converter insist on a representative dataset.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():   # int8 I/O without input statistics: expected
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return converter.convert()
    except Exception as e:  # the converter raises many types; name the model and mode
        raise ValueError(f"TFLite conversion of model {model.name!r} to mode={mode!r} "
                         f"failed: {e}") from e


def _strip_pruning(model):
    if not any(_from_tfmot(layer, _TFMOT_PRUNE) for layer in _all_layers(model)):
        return model
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    return tfmot.sparsity.keras.strip_pruning(model)


def _io_dtypes(flatbuffer):
    runner = LiteRTModel(flatbuffer)
    return (tuple(np.dtype(d["dtype"]).name for d in runner.input_details),
            tuple(np.dtype(d["dtype"]).name for d in runner.output_details))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        inner = layer
        while isinstance(inner, (keras.layers.Wrapper, keras3.layers.Wrapper)) and \
                hasattr(inner, "layer"):
            inner = inner.layer
        if isinstance(inner, (keras.Model, keras3.Model)):
            yield from _all_layers(inner)


def _from_tfmot(layer, package) -> bool:
    return any(cls.__module__.startswith(package) for cls in type(layer).__mro__)
