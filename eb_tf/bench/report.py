"""The benchmark's rows, ratios, predicted cost, markdown table and plot (no training here).

A row is one (method, p) read from its run folder's report.json. Its training cost is
the sum of the phases that produced its final model, whatever the method: every phase
of the report (`search` + `draw` + its ratio's `retrain` for eb/ns/lt, `search` for
dense, `train` for tfmot) except the export, which is not training (its .tflite size
and latency are columns of their own). Every ratio is taken against the `dense` row and
against the `ns` row of the same p: the reference columns of the table.

FLOPs-predicted cost, in units of the dense run (T epochs of the dense net), with t
the EB epoch, r = ticket FLOPs / dense FLOPs per sample and T the budget, as each
method's record states it (`eb_tf.pipeline.methods.Method.predicted_cost`):

| method | search | retrain | predicted |
| --- | --- | --- | --- |
| dense, tfmot | T dense epochs | - | 1 (tfmot's zeros do not shrink dense kernels) |
| eb, eb_int8 | t dense epochs | T - t ticket epochs | (t + r (T - t)) / T |
| ns | T dense epochs | T ticket epochs | 1 + r |
| lt | T dense epochs | T - k ticket epochs (rewind k) | (T + r (T - k)) / T |
| snip | none (scored at init) | T ticket epochs | r + s |
| thinet | T dense epochs (the dense run's) | T ticket epochs | 1 + r + s |

s: the draw's channel-scoring passes (SNIP's gradients, ThiNet's activations) in units
of the dense run, recorded per ticket (report.json `ticket.<p>.scoring.x_dense`).

The measured wall-clock ratio next to it: the gap is the engineering loss (per-epoch
overheads, kernels that do not speed up in step with FLOPs).

Example:

    from eb_tf.bench import report as bench_report
    bench_report.predicted_cost("eb", epochs=160, flops_ratio=0.4, eb_epoch=16)  # 0.46
"""
import os
from typing import List, Optional

from eb_tf.bench import seeds as seeds_lib
from eb_tf.bench import step_time as step_bench
from eb_tf.pipeline import costs, methods, plots

__all__ = ["predicted_cost", "method_row", "add_ratios", "overheads", "markdown", "plot",
           "REFERENCES"]

REFERENCES = ("dense", "ns")   # the rows every other row is compared with (vs_dense, vs_ns)


def predicted_cost(method: str, epochs: int, flops_ratio: float, eb_epoch: Optional[int] = None,
                   rewind_epoch: int = 0, retrain: Optional[str] = None,
                   scoring: float = 0.0) -> float:
    """Training FLOPs of `method` in units of the dense run's (see the module table).

    Args:
      method: a method or variant of `eb_tf.pipeline.methods` (dense, tfmot, eb,
        eb_int8, ns, lt, or one you registered).
      epochs: the budget T.
      flops_ratio: r, ticket FLOPs / dense FLOPs per sample, in (0, 1].
      eb_epoch: t (eb methods only), in [0, T].
      rewind_epoch: k (lt only), in [0, T).
      retrain: `config.retrain` of a method whose record lets the config choose (eb).
      scoring: s, the draw's scoring passes in units of the dense run (snip, thinet).

    Raises:
      ValueError: an unknown method or a value outside its range.

    Example:
      >>> predicted_cost("ns", epochs=160, flops_ratio=0.4)
      1.4
    """
    try:
        record, overrides = methods.resolve(method)
    except ValueError:
        raise ValueError(f"method={method!r} must be one of {', '.join(methods.tokens())}") \
            from None
    return record.predicted_cost(epochs, flops_ratio, eb_epoch, rewind_epoch,
                                 retrain or overrides.get("retrain", "inherit"), scoring)


def method_row(report: dict, method: str, ratio: Optional[float], run_path: str,
               config: dict) -> dict:
    """One benchmark row from a method's report.json (see the module docstring)."""
    record = methods.resolve(method)[0]
    key = None if ratio is None else f"{ratio:g}"
    final_models = report["final"]
    name = key if key in final_models else next(iter(final_models))
    parts = costs.trained_by(report["phases"], record.phases, key)
    if parts is None:
        raise ValueError(f"{run_path}: the report has no finished {'/'.join(record.phases)} "
                         f"phases for {method} p={key}; run the benchmark again to resume it")
    final = final_models[name]
    dense_flops = parts[record.phases[0]]["forward_flops_per_sample"]
    row = {"method": method, "ratio": ratio, "run_dir": run_path,
           "test_acc": final["test"], "val_acc": final.get("validation"),
           "phases": {k: {f: p.get(f) for f in ("epochs", "seconds", "flops", "precision",
                                                 "timing")}
                      for k, p in parts.items()},
           "epochs": sum(p["epochs"] for p in parts.values()),
           "seconds": round(sum(p["seconds"] for p in parts.values()), 3),
           "flops": sum(p["flops"] for p in parts.values()),
           "params": final["params"], "model_flops": final["flops"],
           "dense_flops": dense_flops, "eb_epoch": None, "found": None}
    row["flops_ratio"] = final["flops"] / dense_flops
    if "nonzero_params" in final:  # unstructured pruning: zeros kept in dense kernels
        row["nonzero_params"] = final["nonzero_params"]
        row["sparsity"] = final.get("sparsity")
    row["t_over_T"] = None
    if record.stops_at_ticket:
        row["eb_epoch"], row["found"] = report["eb"][key]["epoch"], report["eb"][key]["found"]
        row["t_over_T"] = row["eb_epoch"] / config["epochs"]
    row["scoring"] = report.get("ticket", {}).get(key, {}).get("scoring", {}).get("x_dense", 0.0)
    row["predicted_cost"] = predicted_cost(method, config["epochs"], row["flops_ratio"],
                                           row["eb_epoch"], config.get("rewind_epoch", 0),
                                           scoring=row["scoring"])
    exported = report.get("export", {}).get("float32", {}).get("models", {}).get(name, {})
    row["tflite_bytes"] = exported.get("size_bytes")
    row["latency_ms"] = exported.get("latency_ms_1t")
    row["tflite_acc"] = exported.get("tflite_acc")
    return row


def add_ratios(rows: List[dict]) -> List[dict]:
    """Adds `vs_dense` and `vs_ns` ({"seconds", "flops"} ratios) in place.

    `vs_ns` compares with the ns row of the same p (dense: the ns row if there is one
    p only); None where there is no such row, as `vs_dense` without a dense row.
    Comparisons are made at one precision: a row whose model was last trained in
    another precision than the `dense` row's (eb_ll: bf16) is compared with the dense
    and ns runs of its precision (dense_bf16, ns_bf16) when the benchmark has them
    (`vs_dense_method` names the dense one).
    """
    dense_name, ns_name = REFERENCES
    denses = [r for r in rows if methods.resolve(r["method"])[0].name == dense_name]
    plain = next((r for r in denses if r["method"] == dense_name), None)
    all_ns = [r for r in rows if methods.resolve(r["method"])[0].name == ns_name]
    for row in rows:
        dense = next((r for r in denses if _precision(r) == _precision(row)), plain)
        row["vs_dense_method"] = None if dense is None else dense["method"]
        same_p = [r for r in all_ns if r["ratio"] == row["ratio"]]
        if row["ratio"] is None:                       # dense vs the one ns row of its p
            ratios = {r["ratio"] for r in all_ns}
            same_p = all_ns if len(ratios) == 1 else []
        ns = next((r for r in same_p if _precision(r) == _precision(row)),
                  next((r for r in same_p if r["method"] == ns_name), None))
        for name, base in (("vs_dense", dense), ("vs_ns", ns)):
            row[name] = None if base is None else {
                k: row[k] / base[k] if base[k] else None for k in ("seconds", "flops")}
        ratio = (row["vs_dense"] or {}).get("seconds")
        row["time_over_predicted"] = None if ratio is None else ratio / row["predicted_cost"]
    return rows


def _precision(row: dict) -> Optional[str]:
    """The precision of the phase that last trained the row's model."""
    return list(row["phases"].values())[-1].get("precision") if row["phases"] else None


def overheads(rows: List[dict], micro: dict) -> List[dict]:
    """What each training phase spent beyond its steps at the bare step time.

    overhead = the phase's seconds - validation - steps x the median bare-step ms of its
    model, measured in the same process (`micro["step_time"]`: the eb run's dense net
    for every dense-net phase, its ticket for that run's retrain), as a share of the
    phase's seconds without validation; validation's share of all its seconds beside it.
    Phases without a measured model, a fit clock (an older run) or in another precision
    than the float32 micro-benchmark get no line.

    Returns:
      [{"method", "ratio", "phase", "steps", "bare_ms", "seconds", "timing",
        "overhead_seconds", "overhead_fraction", "validation_fraction"}].
    """
    step = (micro or {}).get("step_time") or {}
    times = {name: r["ms_per_step"] for name, r in step.get("rows", {}).items()}
    ticket = f"pruned p={step['ratio']:g}" if "ratio" in step else None
    out = []
    for r in rows:
        for phase, p in r["phases"].items():
            timing = p.get("timing") or {}
            model = "dense" if phase in ("search", "train") else \
                ticket if phase == "retrain" and r["method"] == micro.get("method") \
                and r["ratio"] == step.get("ratio") else None
            if not timing.get("steps") or model not in times or p.get("precision") != "fp32":
                continue
            steps, seconds = int(timing["steps"]), float(p["seconds"])
            busy = seconds - timing.get("validation", 0.0)
            overhead = busy - steps * times[model] / 1e3
            out.append({"method": r["method"], "ratio": r["ratio"], "phase": phase,
                        "steps": steps, "bare_ms": times[model], "seconds": seconds,
                        "timing": timing, "overhead_seconds": round(overhead, 3),
                        "overhead_fraction": overhead / busy if busy > 0 else None,
                        "validation_fraction": timing.get("validation", 0.0) / seconds
                        if seconds > 0 else None})
    return out


def _overhead_lines(lines_in: List[dict]) -> List[str]:
    lines = ["", "## Phase overhead", "",
             "overhead = phase seconds - validation - steps x bare ms/step (the micro-benchmark "
             "below, same process), as a share of the phase without validation:", "",
             "| method | p | phase | steps | bare ms/step | phase s | train s | validation s "
             "| epoch end + checkpoint s | setup + teardown s | overhead | validation share |",
             "|" + " --- |" * 12]
    for o in lines_in:
        t = o["timing"]
        lines.append(" | ".join([
            f"| {o['method']}", _fmt(o["ratio"], "{:g}"), o["phase"], str(o["steps"]),
            f"{o['bare_ms']:.1f}", f"{o['seconds']:.1f}", f"{t.get('train', 0):.1f}",
            f"{t.get('validation', 0):.1f}",
            f"{t.get('epoch_end', 0) + t.get('checkpoint', 0):.1f}",
            f"{t.get('setup', 0) + t.get('teardown', 0):.1f}",
            _fmt(o["overhead_fraction"], "{:.1%}"), _fmt(o["validation_fraction"], "{:.1%}")
            + " |"]))
    return lines


def _machine_lines(result: dict) -> List[str]:
    machine, versions = result.get("machine"), result.get("versions") or {}
    if not machine:
        return []
    names = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "eb_tf")
    libs = ", ".join(f"{k} {versions[k]}" for k in names if versions.get(k))
    return [f"Machine: {machine['device']} (bf16 units: "
            f"{'yes' if machine.get('bf16_units') else 'no'}); {libs}.", ""]


def _fmt(value, spec="{:.3f}"):
    return "-" if value is None else spec.format(value)


def markdown(result: dict) -> str:
    """bench.md: the side-by-side table, the micro-benchmarks and the notes."""
    cfg = result["config"]
    lines = [f"# EB Train benchmark: {cfg['model']} width {cfg['width']:g} on {cfg['dataset']}",
             "", f"T = {cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']:g}, "
             f"train_subset {cfg['train_subset'] or 'all'}, seed {cfg['seed']}; one data "
             "pipeline for every method.", ""] + _machine_lines(result) + [
             "| method | p | test acc | EB epoch | t/T | train PFLOPs | FLOPs x dense "
             "| FLOPs x ns | predicted x dense | wall s | time x dense | time x ns "
             "| time / predicted | params | MFLOPs/sample | TFLite KiB | ms batch-1 |",
             "|" + " --- |" * 17]
    for r in result["rows"]:
        eb = "-" if r["eb_epoch"] is None else \
            f"{r['eb_epoch']}" + ("" if r["found"] else " (not found)")
        params = f"{r['params']:,}" if r.get("nonzero_params") is None else \
            f"{r['nonzero_params']:,} nonzero"
        lines.append(" | ".join([
            f"| {r['method']}", _fmt(r["ratio"], "{:g}"), _fmt(r["test_acc"], "{:.4f}"), eb,
            _fmt(r.get("t_over_T"), "{:.0%}"), f"{r['flops'] / 1e15:.4g}", _fmt((r["vs_dense"] or {}).get("flops")),
            _fmt((r["vs_ns"] or {}).get("flops")), _fmt(r["predicted_cost"]),
            f"{r['seconds']:.1f}", _fmt((r["vs_dense"] or {}).get("seconds")),
            _fmt((r["vs_ns"] or {}).get("seconds")), _fmt(r["time_over_predicted"]), params,
            f"{r['model_flops'] / 1e6:.2f}", _fmt(r["tflite_bytes"] and r["tflite_bytes"] / 1024,
                                                  "{:.1f}"),
            _fmt(r["latency_ms"]) + " |"]))
    micro = result.get("micro", {})
    if micro.get("earlybird"):
        e = micro["earlybird"]
        lines += ["", "## EarlyBird overhead", "",
                  f"`on_epoch_end` ({e['bn_layers']} BN layers, {e['channels']} channels, "
                  f"ratios {e['ratios']}): median {e['median_ms']:.2f} ms (p90 "
                  f"{e['p90_ms']:.2f} ms) vs a median search epoch of {e['epoch_s']:.2f} s: "
                  f"{100 * e['fraction']:.3f}% of the epoch."]
    if micro.get("step_time"):
        s = micro["step_time"]
        lines += ["", "## Train-step time vs FLOPs", "",
                  f"batch {s['batch']}, median of {s['repeats']} rounds of {s['steps']} steps "
                  f"(the eb run's dense net, its p={s['ratio']:g} ticket, the ticket rounded "
                  f"to x{s['round_multiple']} widths):", "",
                  step_bench.format_step_table(s["rows"])]
    if result.get("overhead"):
        lines += _overhead_lines(result["overhead"])
    if result.get("per_seed"):
        lines += seeds_lib.markdown_lines(result["rows"])
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> str:
    """Test accuracy vs total training FLOPs, one marker per method (the paper's Fig. 5).

    Drawn by `eb_tf.pipeline.plots.accuracy_vs_flops` (the plots of report.md too): each
    method with its record's marker, a variant hollow. Returns `path`.
    """
    series = []
    for method in dict.fromkeys(r["method"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["method"] == method]
        record, overrides = methods.resolve(method)
        series.append({"label": method, "marker": record.marker, "hollow": bool(overrides),
                       "flops": [r["flops"] for r in rows],
                       "accuracy": [r["test_acc"] for r in rows],
                       "notes": [None if r["ratio"] is None else f"p={r['ratio']:g}"
                                 for r in rows]})
    cfg = result["config"]
    plots.accuracy_vs_flops(series, title=f"{cfg['model']} w{cfg['width']:g}, "
                            f"{os.path.basename(cfg['dataset'])}, T={cfg['epochs']}", path=path)
    return path
