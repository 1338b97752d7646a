"""The export phase: TFLite export of a run's final models, with an `export` report section.

`export(cfg, rd, splits)` is the pipeline's phase (`config.export`, timed like the others);
`export_run(workdir, mode)` exports the run's final models (`report["final"]`, e.g. the
retrained ticket `retrain/p0.5/final.keras`) into the run's `export/<name>/model_<mode>
.tflite` (the layout of the pipeline's own export phase), calibrating int8 on the
run's training data (`config.dataset`) unless the model is quantisation-aware. With
`side_by_side=True` the dense network of the search (`search/final.keras`) comes
first, as the baseline of the size / latency / FLOPs ratios. It measures the Keras and
the .tflite top-1 accuracy on the test split (`config.eval_batches` respected) and the
batch-1 latency, and merges them into report.json under `export[mode]`; the table is
also written to `export/summary_<mode>.md`.

Example:

    section = eb_tf.export_run("/tmp/eb_run", mode="int8", side_by_side=True)
    print(section["table"])
    section["models"]["0.5"]["size_bytes"], section["models"]["0.5"]["tflite_acc"]
"""
import os
from typing import Optional, Sequence

from eb_tf import io_utils
from eb_tf.export import compare, tflite
from eb_tf.pipeline import costs, draw, run_dir, trainer
from eb_tf.pipeline.build import load_splits

__all__ = ["export", "export_run", "DENSE"]

DENSE = "dense"                      # the report name of the search's dense network
_ROW_KEYS = ("mode", "path", "size_bytes", "gzip_bytes", "input_dtypes", "output_dtypes",
             "calibration", "flops", "latency_ms_1t", "latency_ms_nt", "threads_n",
             "keras_acc", "tflite_acc", "flops_ratio", "size_ratio", "gzip_ratio",
             "latency_ratio_1t", "latency_ratio_nt")


def export_run(workdir: str, mode: str = "int8", models: Optional[Sequence[str]] = None,
               side_by_side: bool = False, evaluate: bool = True,
               num_threads: Optional[int] = None, num_runs: int = 100,
               calibration_samples: int = tflite.DEFAULT_CALIBRATION_SAMPLES,
               splits=None) -> dict:
    """Exports a run's final models to TFLite and records them in its report.json.

    Args:
      workdir: a run folder written by `eb_tf.pipeline.runner.run` / `binaries.eb_train`.
      mode: one of `eb_tf.export.tflite.MODES`.
      models: names in `report["final"]` to export (None: all, e.g. `["0.5"]`).
      side_by_side: also export the search's dense network (`search/final.keras`)
        as the first row, the baseline of the ratios.
      evaluate: measure Keras and .tflite test accuracy (else those stay None).
      num_threads: N of the N-thread latency (None: all cores).
      num_runs: timed batch-1 runs per latency figure.
      calibration_samples: training examples used to calibrate int8.
      splits: `eb_tf.data` Splits to use instead of loading `config.dataset`.

    Returns:
      The `export[mode]` report section: `models` {name: row} (see
      `eb_tf.compare_models`; paths relative to workdir), `baseline`, `table`.

    Raises:
      ValueError: not a run folder, no final models yet, an unknown model name or mode,
        or what `eb_tf.export_tflite` rejects.
    """
    tflite.check_mode(mode)
    rd = run_dir.RunDir.existing(workdir)
    final = rd.report().get("final") or {}
    if not final:
        raise ValueError(f"--workdir {rd.path!r} has no final models in report.json yet; run "
                         "eb_train (or eb_retrain) there first")
    names = list(final) if models is None else list(models)
    unknown = [n for n in names if n not in final]
    if unknown or not names:
        raise ValueError(f"models={names!r}: each must be a final model of the run, one of "
                         f"{sorted(final)}")
    paths = {n: final[n]["model"] for n in names}
    if side_by_side and DENSE not in paths:
        dense = os.path.relpath(rd.search_dir("final.keras"), rd.path)
        if not os.path.exists(rd.file(dense)):
            raise ValueError(f"side_by_side needs the dense network {dense!r} in --workdir "
                             f"{rd.path!r}; run the search there first")
        paths = {DENSE: dense, **paths}
    loaded = {n: draw.load_model(rd.file(p)) for n, p in paths.items()}
    needs_data = evaluate or (mode == "int8" and not all(map(tflite.is_qat_model,
                                                             loaded.values())))
    if splits is None and needs_data:
        splits = load_splits(rd.cfg)
    table = compare.compare_models(
        loaded, modes=(mode,),
        data=trainer.eval_data(splits.test(), rd.cfg) if evaluate else None,
        representative_data=(list(splits.representative(calibration_samples))
                             if mode == "int8" and splits is not None else None),
        num_threads=num_threads, num_runs=num_runs, out_dir=rd.file("export"))
    rows = {}
    for name, row in zip(paths, table.rows):       # one mode: one row per model, in order
        rows[name] = {**{k: list(row[k]) if isinstance(row[k], tuple) else row[k]
                         for k in _ROW_KEYS}, "keras_model": paths[name],
                      "path": os.path.relpath(row["path"], rd.path)}
    markdown = table.markdown()
    io_utils.atomic_write_text(rd.file("export", f"summary_{mode}.md"), markdown + "\n")
    previous = rd.report().get("export", {}).get(mode, {}).get("models", {})
    section = {"models": {**previous, **rows}, "baseline": next(iter(paths)), "table": markdown}
    rd.update_report(export={mode: section})
    return section


def export(cfg, rd, splits):
    """The pipeline's export phase: every final model to TFLite in `config.export` mode.

    The files land in export/<name>/model_<mode>.tflite; report.json gains
    `export[mode]` (size, latency, Keras vs TFLite accuracy) and `phases.export`.
    """
    if cfg.export == "none" or rd.phase_done("export"):
        return
    if not rd.report().get("final"):
        raise ValueError(f"export needs the final models in --workdir {rd.path!r}; run the "
                         "search/retrain first")
    meter = costs.PhaseMeter()
    meter.start()
    section = export_run(rd.path, mode=cfg.export, splits=splits)
    meter.stop()
    rd.update_report(phases={"export": {
        "done": True, "mode": cfg.export, "epochs": 0, "flops": 0, "precision": cfg.export,
        "seconds": round(meter.seconds, 3), "energy": meter.energy(),
        "models": sorted(section.get("models", {}))}})
