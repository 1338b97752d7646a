"""Evaluating .tflite models with the LiteRT interpreter: accuracy, latency, size.

`LiteRTModel` wraps `ai_edge_litert.interpreter.Interpreter` (never the deprecated
`tf.lite.Interpreter`) so that a .tflite model is called like a Keras model: float
inputs of any batch size in, float outputs out; int8 inputs are quantised with the
input tensor's scale and zero point and int8 outputs dequantised.

Example:

    runner = eb_tf.LiteRTModel("ticket_int8.tflite", num_threads=1)
    logits = runner(x_test[:8])                        # float32, shape (8, 10)
    acc = eb_tf.evaluate_accuracy(runner, splits.test())
    lat = eb_tf.measure_latency("ticket_int8.tflite", num_threads=1, num_runs=200)
    print(acc, lat.median_ms)
"""
import dataclasses
import os
import time
from typing import Any, List, Optional, Union

import numpy as np

from eb_tf.compat import keras, keras3

__all__ = ["LiteRTModel", "LatencyStats", "evaluate_accuracy", "measure_latency"]


class LiteRTModel:
    """A .tflite model in the LiteRT interpreter, called like a Keras model.

    Args:
      model: a .tflite path, the flatbuffer bytes, or an `eb_tf.ExportInfo`.
      num_threads: interpreter threads (None: LiteRT's default).

    Attributes:
      size_bytes: the flatbuffer's size.
      input_details / output_details: the interpreter's tensor details.

    Example:
      >>> runner = eb_tf.LiteRTModel(info)           # info = eb_tf.export_tflite(...)
      >>> runner(np.zeros((2, 32, 32, 3), np.float32)).shape
      (2, 10)
    """

    def __init__(self, model: Any, num_threads: Optional[int] = 1):
        # pylint: disable-next=import-outside-toplevel
        from ai_edge_litert.interpreter import Interpreter
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads={num_threads!r} must be an int >= 1 or None")
        content = _flatbuffer(model)
        self.size_bytes = len(content)
        self.num_threads = num_threads
        self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._batch = None

    @property
    def input_details(self) -> List[dict]:
        return self._interpreter.get_input_details()

    @property
    def output_details(self) -> List[dict]:
        return self._interpreter.get_output_details()

    def __call__(self, *inputs) -> Union[np.ndarray, List[np.ndarray]]:
        """Runs a batch of float inputs (one array per model input); float outputs."""
        details = self.input_details
        if len(inputs) != len(details):
            raise ValueError(f"the .tflite model has {len(details)} input(s); got "
                             f"{len(inputs)} array(s)")
        batch = len(inputs[0])
        if batch != self._batch:
            for d, x in zip(details, inputs):
                self._interpreter.resize_tensor_input(d["index"], [batch] + list(x.shape[1:]))
            self._interpreter.allocate_tensors()
            self._batch = batch
            details = self.input_details
        for d, x in zip(details, inputs):
            self._interpreter.set_tensor(d["index"], quantize_input(np.asarray(x), d))
        self._interpreter.invoke()
        outs = [dequantize_output(self._interpreter.get_tensor(d["index"]), d)
                for d in self.output_details]
        return outs[0] if len(outs) == 1 else outs

    def invoke(self):
        """Runs the interpreter on whatever its input tensors hold (for timing)."""
        self._interpreter.invoke()

    def set_batch1_inputs(self, seed: int = 0):
        """Fills batch-1 inputs with random values of each input's dtype."""
        rng = np.random.default_rng(seed)
        for d in self.input_details:
            shape = [1] + list(d["shape_signature"][1:])
            if any(s < 1 for s in shape):
                raise ValueError(f"input {d['name']!r} has unknown dimensions {shape}; "
                                 "export a model with a fixed input shape")
            self._interpreter.resize_tensor_input(d["index"], shape)
        self._interpreter.allocate_tensors()
        self._batch = 1
        for d in self.input_details:
            x = rng.uniform(-1.0, 1.0, size=d["shape"]).astype(np.float32)
            self._interpreter.set_tensor(d["index"], quantize_input(x, d))


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the input tensor's dtype (int8/uint8: round(x / scale) + zero point)."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer) or np.issubdtype(x.dtype, np.integer):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ValueError(f"input {detail['name']!r} is {dtype.name} without a quantisation "
                         "scale; pass integer arrays for it")
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, detail: dict) -> np.ndarray:
    """The output tensor as float32 ((q - zero point) * scale for quantised outputs)."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(q.dtype, np.integer) and scale != 0:
        return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return q.astype(np.float32) if q.dtype != np.float32 else q.copy()


def evaluate_accuracy(model: Any, data: Any, max_samples: Optional[int] = None,
                      batch_size: int = 64) -> float:
    """Top-1 accuracy of a Keras model or a .tflite model on labelled data.

    Args:
      model: a Keras model (tf_keras or Keras 3), an `eb_tf.LiteRTModel`, a .tflite path, flatbuffer
        bytes or an `eb_tf.ExportInfo`.
      data: an `(x, y)` pair of arrays, or an iterable of `(x, y)` batches (e.g.
        `splits.test()`); labels are class indices or one-hot rows.
      max_samples: evaluate at most this many examples (None: all).
      batch_size: the batch size for `(x, y)` arrays.

    Returns:
      The fraction of examples whose argmax prediction equals the label.

    Example:
      >>> eb_tf.evaluate_accuracy("model_int8.tflite", (x_test, y_test))
      0.968
    """
    if isinstance(model, (keras.Model, keras3.Model)):
        predict = lambda x: np.asarray(model(x, training=False))  # noqa: E731
    else:
        runner = model if isinstance(model, LiteRTModel) else LiteRTModel(model, num_threads=None)
        predict = runner
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples={max_samples!r} must be an int >= 1 or None")
    correct = seen = 0
    for x, y in _labelled_batches(data, batch_size):
        if max_samples is not None:
            x, y = x[:max_samples - seen], y[:max_samples - seen]
        labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
        logits = np.asarray(predict(x.astype(np.float32)))
        correct += int(np.sum(np.argmax(logits, axis=-1) == labels.astype(np.int64)))
        seen += len(labels)
        if max_samples is not None and seen >= max_samples:
            break
    if seen == 0:
        raise ValueError("data holds no examples; give (x, y) arrays or (x, y) batches")
    return correct / seen


def _labelled_batches(data, batch_size):
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"data has {len(x)} inputs but {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], np.asarray(y[i:i + batch_size])
        return
    for element in data:
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise ValueError("data must be (x, y) arrays or yield (x, y) batches; got an "
                             f"element of type {type(element).__name__}")
        yield np.asarray(element[0]), np.asarray(element[1])


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Batch-1 latency of a .tflite model, in milliseconds.

    Attributes:
      median_ms / mean_ms / min_ms / p90_ms: over `num_runs` timed invocations.
      num_runs: timed runs (after the warm-up runs).
      num_threads: interpreter threads.
    """
    median_ms: float
    mean_ms: float
    min_ms: float
    p90_ms: float
    num_runs: int
    num_threads: int


def measure_latency(model: Any, num_threads: int = 1, num_runs: int = 100,
                    warmup: int = 10) -> LatencyStats:
    """Batch-1 latency of a .tflite model: median of `num_runs` timed `invoke()` calls.

    Only the interpreter's `invoke()` is timed (inputs are set once, random values of
    the input dtype), as LiteRT's benchmark_model does. Timings on a shared machine
    are noisy: repeat them and compare medians.

    Args:
      model: a .tflite path, flatbuffer bytes or an `eb_tf.ExportInfo`.
      num_threads: interpreter threads (1 for the single-core figure, e.g.
        `os.cpu_count()` for N).
      num_runs: timed runs (>= 1).
      warmup: untimed runs first (>= 0).

    Example:
      >>> eb_tf.measure_latency("ticket.tflite", num_threads=1).median_ms
      0.73
    """
    for name, value, lo in (("num_threads", num_threads, 1), ("num_runs", num_runs, 1),
                            ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < lo:
            raise ValueError(f"{name}={value!r} must be an int >= {lo}")
    runner = LiteRTModel(model, num_threads=num_threads)
    runner.set_batch1_inputs()
    for _ in range(warmup):
        runner.invoke()
    times = np.empty(num_runs)
    for i in range(num_runs):
        start = time.perf_counter()
        runner.invoke()
        times[i] = time.perf_counter() - start
    times *= 1e3
    return LatencyStats(median_ms=float(np.median(times)), mean_ms=float(times.mean()),
                        min_ms=float(times.min()), p90_ms=float(np.percentile(times, 90)),
                        num_runs=num_runs, num_threads=num_threads)


def _flatbuffer(model) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    path = getattr(model, "path", model)        # an ExportInfo
    if isinstance(path, (str, os.PathLike)):
        if not os.path.isfile(path):
            raise ValueError(f"no .tflite file at {str(path)!r}")
        with open(path, "rb") as f:
            return f.read()
    raise ValueError(f"expected a .tflite path, flatbuffer bytes or an ExportInfo; got "
                     f"{type(model).__name__}")
