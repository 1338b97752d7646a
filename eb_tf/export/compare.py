"""Side-by-side edge comparison: dense vs pruned ticket as .tflite (size, latency, accuracy).

`compare_models` exports every model in every mode, then measures file size (raw and
gzipped, where unstructured sparsity shows up), batch-1 latency with 1 and N
interpreter threads and, given labelled data, top-1 accuracy of the Keras model and
of the .tflite. Ratios are taken against the first model (the baseline) in the same
mode, next to the FLOPs ratio: a channel-pruned ticket should gain latency roughly
in step with its FLOPs; unstructured sparsity gains only gzipped size.

Example:

    table = eb_tf.compare_models({"dense": dense, "ticket p=0.5": ticket},
                                 modes=("float32", "int8"),
                                 representative_data=splits.representative(200),
                                 data=splits.test())
    print(table.markdown())
"""
import dataclasses
import gzip
import itertools
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from eb_tf.compat import check_model, check_tf_keras_model, keras
from eb_tf.export import litert, tflite
from eb_tf.pruning.flops import count_flops

__all__ = ["Comparison", "compare_models", "magnitude_pruned"]

_COLUMNS = (  # (row key, markdown header, format)
    ("model", "model", "{}"), ("mode", "mode", "{}"),
    ("mflops", "MFLOPs", "{:.2f}"), ("flops_ratio", "FLOPs x", "{:.3f}"),
    ("size_kib", "size KiB", "{:.1f}"), ("size_ratio", "size x", "{:.3f}"),
    ("gzip_kib", "gzip KiB", "{:.1f}"), ("gzip_ratio", "gzip x", "{:.3f}"),
    ("latency_ms_1t", "ms 1 thr", "{:.3f}"), ("latency_ratio_1t", "lat x 1 thr", "{:.3f}"),
    ("latency_ms_nt", "ms N thr", "{:.3f}"), ("latency_ratio_nt", "lat x N thr", "{:.3f}"),
    ("keras_acc", "Keras acc", "{:.4f}"), ("tflite_acc", "TFLite acc", "{:.4f}"),
)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The rows of `compare_models`, one per (model, mode), baseline first.

    Attributes:
      rows: dicts with `model`, `mode`, `flops` (per sample), `size_bytes`, `gzip_bytes`,
        `latency_ms_1t`, `latency_ms_nt`, `threads_n`, `keras_acc`, `tflite_acc`
        (None without data), `path` (None without out_dir), `input_dtypes`,
        `output_dtypes`, `calibration` (see `ExportInfo`) and the `*_ratio` keys
        (this model / the baseline, same mode).
    """
    rows: List[Dict[str, Any]]

    def markdown(self) -> str:
        """The rows as a GitHub markdown table (ratios vs the first model)."""
        threads = self.rows[0]["threads_n"] if self.rows else "N"
        lines = ["| " + " | ".join(h.replace("N thr", f"{threads} thr") for _, h, _ in _COLUMNS)
                 + " |", "|" + " --- |" * len(_COLUMNS)]
        for row in self.rows:
            cells = ["-" if row.get(key) is None else fmt.format(row[key])
                     for key, _, fmt in _COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def compare_models(models: Mapping[str, Any], modes: Sequence[str] = ("float32", "int8"),
                   data: Any = None, representative_data: Any = None,
                   num_threads: Optional[int] = None, num_runs: int = 100, warmup: int = 10,
                   out_dir: Optional[str] = None,
                   max_eval_samples: Optional[int] = None) -> Comparison:
    """Exports and measures several models side by side (the first one is the baseline).

    Args:
      models: {name: Keras model (tf_keras or Keras 3)}, e.g.
        `{"dense": dense, "ticket": ticket}`.
      modes: export modes (see `eb_tf.export.tflite.MODES`).
      data: optional labelled data (`(x, y)` arrays or an iterable of `(x, y)` batches)
        for the Keras and .tflite top-1 accuracy columns.
      representative_data: calibration data for `int8` (see `eb_tf.export_tflite`;
        not needed for QAT models). Generators are read once and reused.
      num_threads: the N of the N-thread latency column (None: `os.cpu_count()`).
      num_runs / warmup: timed and untimed batch-1 runs per latency figure.
      out_dir: if given, the .tflite files are kept as `out_dir/<name>/model_<mode>.tflite`
        (the run folder's `export/` layout); else they are deleted.
      max_eval_samples: evaluate accuracy on at most this many examples.

    Returns:
      A `Comparison`; `.markdown()` renders it.

    Raises:
      ValueError: no models, an unknown mode, or what `export_tflite` rejects.

    Example:
      >>> rows = eb_tf.compare_models({"dense": m, "ticket": t}, modes=("float32",)).rows
      >>> rows[1]["latency_ratio_1t"]
      0.48
    """
    if not models:
        raise ValueError("models is empty; give {name: Keras model}, baseline first")
    for name, model in models.items():
        check_model(model, f"eb_tf.compare_models (model {name!r})")
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    for mode in modes:
        tflite.check_mode(mode)
    threads_n = num_threads or os.cpu_count() or 1
    # One-shot iterators (generators) are read once here, as every model needs them.
    if hasattr(representative_data, "__next__"):
        representative_data = list(itertools.islice(representative_data,
                                                    tflite.DEFAULT_CALIBRATION_SAMPLES))
    if hasattr(data, "__next__"):
        data = list(data)
    rows = []
    for name, model in models.items():
        flops = _flops(model)
        keras_acc = (None if data is None else
                     litert.evaluate_accuracy(model, data, max_samples=max_eval_samples))
        for mode in modes:
            rep = representative_data if mode == "int8" else None
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(out_dir or tmp, _safe(name), f"model_{mode}.tflite")
                info = tflite.export_tflite(model, path, mode, rep)
                flatbuffer = _read(path)
            latency = {t: litert.measure_latency(flatbuffer, t, num_runs, warmup).median_ms
                       for t in sorted({1, threads_n})}
            rows.append({
                "model": name, "mode": mode, "path": path if out_dir else None,
                "input_dtypes": info.input_dtypes, "output_dtypes": info.output_dtypes,
                "calibration": info.calibration, "flops": flops,
                "size_bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, 9)),
                "latency_ms_1t": latency[1], "latency_ms_nt": latency[threads_n],
                "threads_n": threads_n, "keras_acc": keras_acc,
                "tflite_acc": (None if data is None else litert.evaluate_accuracy(
                    litert.LiteRTModel(flatbuffer, num_threads=None), data,
                    max_samples=max_eval_samples)),
            })
    _add_ratios(rows)
    return Comparison(rows=rows)


def magnitude_pruned(model, sparsity: float = 0.5):
    """tfmot unstructured magnitude pruning at `sparsity`, stripped: the contrast case.

    Every layer tfmot can prune gets its smallest-|w| `sparsity` fraction of weights
    set to zero in one shot (`prune_low_magnitude` with `ConstantSparsity`, one mask
    update, `strip_pruning`) on a copy; `model` is left as it was. The result has the
    same shapes and FLOPs as `model`:
    its .tflite is as large and as slow, and only compresses better.

    Example:
      >>> sparse = eb_tf.export.compare.magnitude_pruned(dense, 0.5)
    """
    check_tf_keras_model(model, "eb_tf.export.compare.magnitude_pruned")
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity!r} must be in (0, 1)")
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    sparse = tfmot.sparsity.keras
    copy = keras.models.clone_model(model)   # tfmot's wrappers share the layers they wrap
    copy.set_weights(model.get_weights())
    wrapped = sparse.prune_low_magnitude(
        copy, pruning_schedule=sparse.ConstantSparsity(sparsity, begin_step=0, frequency=1))
    for layer in wrapped.layers:
        if hasattr(layer, "pruning_obj"):
            layer.pruning_step.assign(1)
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()
    return sparse.strip_pruning(wrapped)


def _add_ratios(rows):
    base = {row["mode"]: row for row in rows if row["model"] == rows[0]["model"]}
    for row in rows:
        ref = base[row["mode"]]
        for key, ratio in (("flops", "flops_ratio"), ("size_bytes", "size_ratio"),
                           ("gzip_bytes", "gzip_ratio"), ("latency_ms_1t", "latency_ratio_1t"),
                           ("latency_ms_nt", "latency_ratio_nt")):
            ok = row[key] is not None and ref[key]
            row[ratio] = row[key] / ref[key] if ok else None
        row["size_kib"] = row["size_bytes"] / 1024
        row["gzip_kib"] = row["gzip_bytes"] / 1024
        row["mflops"] = row["flops"] / 1e6 if row["flops"] is not None else None


def _flops(model) -> Optional[int]:
    try:
        return count_flops(model).total
    except ValueError:          # e.g. dynamic shapes: leave the column empty
        return None


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
