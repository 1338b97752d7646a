"""What a pruning run saved against dense training of the same budget T: report.json `vs_dense`.

A run of a pruning method (`eb`, `ns`, `lt`...) has no dense run in its folder, but its
search trained the dense network (with L1 on the BN gammas, which costs nothing
measurable) on the same data, so the dense cost of T epochs follows from it:

- training FLOPs, exact: 3 x the search's forward FLOPs per sample x its samples per
  epoch x T (`costs.training_flops`, the convention of every phase record), against the
  run's own: the phases of the method's record (search + draw + the ratio's retrain),
  as the benchmark counts them (`eb_tf.bench.report.method_row`);
- wall-clock, an estimate (`"estimated": true`): the search's measured seconds plus
  T - t more epochs at the MEDIAN measured search epoch. The first epoch, which pays
  tf.function tracing once, as a dense run would, counts once: median x T would drop
  it, mean x T would count it T/t times;
- the ticket against the dense net: params, forward FLOPs per sample, and accuracy;
  the dense net's accuracy known here is the search's validation accuracy at the draw
  epoch t (`dense_at_draw`), not that of a dense model trained to T (none exists);
- speed: one training step (batch `min(config.batch_size, 64)`) and batch-1 inference
  of search/final.keras against each final ticket, interleaved rounds, medians, on this
  machine's first device. Measured once per run (kept while the same models are in the
  report), in a few seconds (mostly tf.function tracing; 3 rounds of ~0.2 s per model
  and kind, ~0.02 s under `config.smoke`), and reported as its own `seconds`, never as
  training.

A method that does not prune (`dense`) is its own baseline: no `vs_dense` section.

Example:

    from eb_tf.pipeline import savings
    report = savings.record(rd, cfg, splits)       # after the phases (runner.run does it)
    row = report["vs_dense"]["by_ratio"]["0.5"]
    row["flops_ratio"], row["seconds_ratio"], row["train_step_speedup"]
"""
import math
import os
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import tf
from eb_tf.pipeline import costs, methods, step_timing
from eb_tf.pipeline.draw import load_model

__all__ = ["compare", "measure_speed", "record", "MAX_TIMING_BATCH", "NOTES"]

MAX_TIMING_BATCH = 64   # the train step is timed at min(config.batch_size, this)

NOTES = (
    "dense = the search's network trained for all T epochs on the same data: the search "
    "trains it (with L1 on the BN gammas, a negligible cost), so its epochs are the dense "
    "epochs' cost",
    "dense.flops is exact (3 x forward FLOPs per sample x samples per epoch x T); "
    "dense.seconds is estimated: the search's measured seconds + the remaining T - t "
    "epochs at the median search epoch",
    "accuracy.dense_at_draw is the search's validation accuracy at the draw epoch, not "
    "that of a dense model trained to T (this folder holds none)",
    "speed: train step and batch-1 inference of search/final.keras vs each final ticket "
    "on this machine, measured once; its seconds are not training",
)


def compare(report: dict, search_history: Sequence[dict], epochs: int) -> Optional[dict]:
    """The `vs_dense` section without its speed part, or None (no finished pruning search).

    Args:
      report: a run's report.json.
      search_history: search/history.json (per-epoch `seconds`, `val_accuracy`).
      epochs: the budget T (`config.epochs`).
    """
    record = methods.get(report["method"])
    phases = report.get("phases", {})
    search = phases.get("search") or {}
    if not record.prunes or not search.get("done") or not search.get("epochs"):
        return None
    measured = search["epochs"]
    per_epoch = search["samples"] // measured   # the search counted epochs x samples/epoch
    epoch_seconds = [h["seconds"] for h in search_history if h.get("seconds") is not None]
    median = float(np.median(epoch_seconds)) if epoch_seconds else search["seconds"] / measured
    extra = max(epochs - measured, 0)
    dense = {"epochs": int(epochs), "forward_flops_per_sample": search["forward_flops_per_sample"],
             "samples_per_epoch": per_epoch,
             "flops": costs.training_flops(search["forward_flops_per_sample"], per_epoch * epochs),
             "seconds": round(search["seconds"] + median * extra, 3), "estimated": True,
             "measured_epochs": measured, "measured_seconds": search["seconds"],
             "median_epoch_seconds": round(median, 3), "extrapolated_epochs": extra,
             "precision": search.get("precision")}
    dense["params"] = phases.get("draw", {}).get("dense", {}).get("params")
    by_ratio = {}
    for key, final in report.get("final", {}).items():
        parts = costs.trained_by(phases, record.phases, key)
        if key not in report.get("ticket", {}) or parts is None:
            continue
        ticket = report["ticket"][key]
        dense["params"] = ticket.get("dense_params", dense["params"])
        flops = sum(int(p.get("flops") or 0) for p in parts.values())
        seconds = round(sum(float(p.get("seconds") or 0.0) for p in parts.values()), 3)
        draw_epoch = report.get("eb", {}).get(key, {}).get("epoch", measured)
        at_draw = next((h for h in search_history if h.get("epoch") == draw_epoch), {})
        by_ratio[key] = {
            "train": {"phases": list(parts), "flops": flops, "seconds": seconds},
            "flops_ratio": flops / dense["flops"] if dense["flops"] else None,
            "seconds_ratio": seconds / dense["seconds"] if dense["seconds"] else None,
            "ticket": {"params": final["params"], "flops_per_sample": final["flops"],
                       "params_ratio": _ratio(final["params"], dense["params"]),
                       "flops_ratio": _ratio(final["flops"], dense["forward_flops_per_sample"]),
                       "model": final.get("model")},
            "accuracy": {"ticket": {"validation": final.get("validation"),
                                    "test": final.get("test")},
                         "dense_at_draw": {"epoch": draw_epoch,
                                           "validation": at_draw.get("val_accuracy")},
                         "dense_trained_to_T": None}}
    return {"label": "EB Train" if record.stops_at_ticket else report["method"],
            "method": report["method"], "dense": dense, "by_ratio": by_ratio,
            "notes": list(NOTES)}


def _ratio(a, b):
    return a / b if a is not None and b else None


# ---------------------------------------------------------------------- speed
def _time_interleaved(fns: Mapping[str, Callable], round_seconds: float, rounds: int,
                      sync_each: bool) -> Dict[str, dict]:
    """{name: {"ms", "ms_rounds", "calls"}}: rounds of each fn in turn, median round."""
    calls = {}
    for name, fn in fns.items():
        fn().numpy()  # traces
        start = time.perf_counter()
        fn().numpy()
        calls[name] = int(min(50, max(1, math.ceil(round_seconds / max(
            time.perf_counter() - start, 1e-6)))))
    rows = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                out = fn()
                if sync_each:
                    out.numpy()
            out.numpy()
            rows[name].append(1e3 * (time.perf_counter() - start) / calls[name])
    return {name: {"ms": round(float(np.median(r)), 4), "ms_rounds": [round(v, 4) for v in r],
                   "calls": calls[name]} for name, r in rows.items()}


def measure_speed(paths: Mapping[str, str], batch: int, round_seconds: float = 0.2,
                  rounds: int = 3, input_shape=None) -> dict:
    """Train-step and batch-1 inference milliseconds of saved models, timed interleaved.

    Args:
      paths: {name: .keras file}; each is loaded and trained on a random batch (the
        files are not changed).
      batch: the train step's batch size.
      round_seconds: about how long one round of one model takes (sets the calls per
        round, 1 to 50); `rounds` rounds, models in turn, the median round counts.
      input_shape: the input shape (no batch) for models whose own has unknown dims.

    Returns:
      {"device", "batch", "rounds", "train_step": {name: {"ms", "ms_rounds", "calls"}},
       "inference_batch1": {name: ...}, "seconds" (the measurement's wall-clock)}.
    """
    start = time.perf_counter()
    steps, infers = {}, {}
    for name, path in paths.items():
        model = load_model(path)
        x, y = step_timing.random_batch(model, batch, input_shape=input_shape)
        infers[name] = tf.function(lambda m=model, x1=x[:1]: m(x1, training=False))
        steps[name] = lambda s=step_timing.train_step(model, 1e-4), x=x, y=y: s(x, y)
    out = {"device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
           "batch": int(batch), "rounds": int(rounds)}
    # Inference first: the train steps then move the weights (timing does not care).
    out["inference_batch1"] = _time_interleaved(infers, round_seconds, rounds, sync_each=True)
    out["train_step"] = _time_interleaved(steps, round_seconds, rounds, sync_each=False)
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def _input_shape(splits) -> Optional[tuple]:
    if splits is None:
        return None
    spec = splits.test().element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    return tuple(spec.shape[1:])


def record(rd, cfg, splits=None) -> dict:
    """Writes report.json `vs_dense` (see the module docstring) and returns the report.

    A method that does not prune, or a run whose search is not finished, gets no
    section. The speed is measured only when the report does not hold it for the same
    models yet; a model it cannot time leaves `speed: {"skipped": reason}`.
    """
    report = rd.report()
    history_path = rd.search_dir("history.json")
    history: List[dict] = io_utils.read_json(history_path) if os.path.exists(history_path) \
        else []
    section = compare(report, history, cfg.epochs)
    if section is None:
        return report
    models = {"dense": "search/final.keras",
              **{k: r["ticket"]["model"] for k, r in section["by_ratio"].items()}}
    speed = (report.get("vs_dense") or {}).get("speed") or {}
    if section["by_ratio"] and speed.get("models") != models:
        try:
            speed = measure_speed({k: rd.file(p) for k, p in models.items()},
                                  min(cfg.batch_size, MAX_TIMING_BATCH),
                                  round_seconds=0.02 if cfg.smoke else 0.2,
                                  input_shape=_input_shape(splits))
        except (ValueError, TypeError, OSError, tf.errors.OpError) as e:
            speed = {"skipped": f"{type(e).__name__}: {e}"}
        speed["models"] = models
    section["speed"] = speed
    for key, row in section["by_ratio"].items():
        for kind in ("train_step", "inference_batch1"):
            times = speed.get(kind, {})
            row[f"{kind}_speedup"] = (times["dense"]["ms"] / times[key]["ms"]
                                      if "dense" in times and key in times else None)
    return rd.update_report(vs_dense=section)
