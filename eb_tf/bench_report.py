"""The benchmark's rows, ratios, predicted cost, markdown table and plot (no training here).

A row is one (method, p) read from its run folder's report.json. Its training cost is
the sum of the phases that produced its final model: `search` + `draw` + its ratio's
`retrain` for eb/ns/lt, `search` for dense, `train` for tfmot. The export phase is
not training and is left out (its .tflite size and latency are columns of their own).
Every ratio is taken against the `dense` row and against the `ns` row of the same p.

FLOPs-predicted cost, in units of the dense run (T epochs of the dense net), with t
the EB epoch, r = ticket FLOPs / dense FLOPs per sample and T the budget, following
the pipeline's definitions (`eb_tf.train_lib`):

| method | search | retrain | predicted |
| --- | --- | --- | --- |
| dense, tfmot | T dense epochs | - | 1 (tfmot's zeros do not shrink dense kernels) |
| eb, eb_int8 | t dense epochs | T - t ticket epochs | (t + r (T - t)) / T |
| ns | T dense epochs | T ticket epochs | 1 + r |
| lt | T dense epochs | T - k ticket epochs (rewind k) | (T + r (T - k)) / T |

The measured wall-clock ratio next to it: the gap is the engineering loss (per-epoch
overheads, kernels that do not speed up in step with FLOPs).

Example:

    from eb_tf import bench_report
    bench_report.predicted_cost("eb", epochs=160, flops_ratio=0.4, eb_epoch=16)  # 0.46
"""
import os
from typing import Dict, List, Optional

__all__ = ["predicted_cost", "method_row", "add_ratios", "markdown", "plot", "TICKET_METHODS"]

TICKET_METHODS = ("eb", "eb_int8", "ns", "lt")   # rows with a drawn, retrained ticket
EB_METHODS = ("eb", "eb_int8")


def predicted_cost(method: str, epochs: int, flops_ratio: float, eb_epoch: Optional[int] = None,
                   rewind_epoch: int = 0) -> float:
    """Training FLOPs of `method` in units of the dense run's (see the module table).

    Args:
      method: dense, tfmot, eb, eb_int8, ns or lt.
      epochs: the budget T.
      flops_ratio: r, ticket FLOPs / dense FLOPs per sample, in (0, 1].
      eb_epoch: t (eb methods only), in [0, T].
      rewind_epoch: k (lt only), in [0, T).

    Raises:
      ValueError: an unknown method or a value outside its range.

    Example:
      >>> predicted_cost("ns", epochs=160, flops_ratio=0.4)
      1.4
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be >= 1")
    if not 0.0 < flops_ratio <= 1.0:
        raise ValueError(f"flops_ratio={flops_ratio!r} must be in (0, 1]")
    if method in ("dense", "tfmot"):
        return 1.0
    if method in EB_METHODS:
        if eb_epoch is None or not 0 <= eb_epoch <= epochs:
            raise ValueError(f"eb_epoch={eb_epoch!r} must be in [0, {epochs}] for {method}")
        return (eb_epoch + flops_ratio * (epochs - eb_epoch)) / epochs
    if method == "ns":
        return 1.0 + flops_ratio
    if method == "lt":
        if not 0 <= rewind_epoch < epochs:
            raise ValueError(f"rewind_epoch={rewind_epoch!r} must be in [0, {epochs})")
        return (epochs + flops_ratio * (epochs - rewind_epoch)) / epochs
    raise ValueError(f"method={method!r} must be one of dense, tfmot, eb, eb_int8, ns, lt")


def _cost_parts(report: dict, method: str, key: Optional[str]) -> Dict[str, dict]:
    phases = report["phases"]
    if method == "tfmot":
        return {"train": phases["train"]}
    if method == "dense":
        return {"search": phases["search"]}
    return {"search": phases["search"], "draw": phases["draw"],
            "retrain": phases["retrain"]["by_ratio"][key]}


def method_row(report: dict, method: str, ratio: Optional[float], run_path: str,
               config: dict) -> dict:
    """One benchmark row from a method's report.json (see the module docstring)."""
    key = None if ratio is None else f"{ratio:g}"
    name = "dense" if method == "dense" else ("tfmot" if method == "tfmot" else key)
    parts = _cost_parts(report, method, key)
    final = report["final"][name]
    dense_flops = parts.get("search", parts.get("train"))["forward_flops_per_sample"]
    row = {"method": method, "ratio": ratio, "run_dir": run_path,
           "test_acc": final["test"], "val_acc": final.get("validation"),
           "phases": {k: {f: p[f] for f in ("epochs", "seconds", "flops")}
                      for k, p in parts.items()},
           "epochs": sum(p["epochs"] for p in parts.values()),
           "seconds": round(sum(p["seconds"] for p in parts.values()), 3),
           "flops": sum(p["flops"] for p in parts.values()),
           "params": final["params"], "model_flops": final["flops"],
           "dense_flops": dense_flops, "eb_epoch": None, "found": None}
    row["flops_ratio"] = 1.0 if method == "tfmot" else final["flops"] / dense_flops
    if method == "tfmot":
        row["nonzero_params"] = final["nonzero_params"]
        row["sparsity"] = report["tfmot"]["sparsity"]
    if method in EB_METHODS:
        row["eb_epoch"], row["found"] = report["eb"][key]["epoch"], report["eb"][key]["found"]
    row["predicted_cost"] = predicted_cost(method, config["epochs"], row["flops_ratio"],
                                           row["eb_epoch"], config.get("rewind_epoch", 0))
    exported = report.get("export", {}).get("float32", {}).get("models", {}).get(name, {})
    row["tflite_bytes"] = exported.get("size_bytes")
    row["latency_ms"] = exported.get("latency_ms_1t")
    row["tflite_acc"] = exported.get("tflite_acc")
    return row


def add_ratios(rows: List[dict]) -> List[dict]:
    """Adds `vs_dense` and `vs_ns` ({"seconds", "flops"} ratios) in place.

    `vs_ns` compares with the ns row of the same p (dense: the ns row if there is one
    p only); None where there is no such row, as `vs_dense` without a dense row.
    """
    dense = next((r for r in rows if r["method"] == "dense"), None)
    all_ns = [r for r in rows if r["method"] == "ns"]
    for row in rows:
        ns = next((r for r in all_ns if r["ratio"] == row["ratio"]), None)
        if row["ratio"] is None and len(all_ns) == 1:  # dense vs the one ns row
            ns = all_ns[0]
        for name, base in (("vs_dense", dense), ("vs_ns", ns)):
            row[name] = None if base is None else {
                k: row[k] / base[k] if base[k] else None for k in ("seconds", "flops")}
        ratio = (row["vs_dense"] or {}).get("seconds")
        row["time_over_predicted"] = None if ratio is None else ratio / row["predicted_cost"]
    return rows


def _fmt(value, spec="{:.3f}"):
    return "-" if value is None else spec.format(value)


def markdown(result: dict) -> str:
    """bench.md: the side-by-side table, the micro-benchmarks and the notes."""
    cfg = result["config"]
    lines = [f"# EB Train benchmark: {cfg['model']} width {cfg['width']:g} on {cfg['dataset']}",
             "", f"T = {cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']:g}, "
             f"train_subset {cfg['train_subset'] or 'all'}, seed {cfg['seed']}; one data "
             "pipeline for every method.", "",
             "| method | p | test acc | EB epoch | train PFLOPs | FLOPs x dense | FLOPs x ns "
             "| predicted x dense | wall s | time x dense | time x ns | time / predicted "
             "| params | MFLOPs/sample | TFLite KiB | ms batch-1 |",
             "|" + " --- |" * 16]
    for r in result["rows"]:
        eb = "-" if r["eb_epoch"] is None else \
            f"{r['eb_epoch']}" + ("" if r["found"] else " (not found)")
        params = f"{r['params']:,}" if r["method"] != "tfmot" else \
            f"{r['nonzero_params']:,} nonzero"
        lines.append(" | ".join([
            f"| {r['method']}", _fmt(r["ratio"], "{:g}"), _fmt(r["test_acc"], "{:.4f}"), eb,
            f"{r['flops'] / 1e15:.4g}", _fmt((r["vs_dense"] or {}).get("flops")),
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
        from eb_tf import step_bench  # pylint: disable=import-outside-toplevel
        s = micro["step_time"]
        lines += ["", "## Train-step time vs FLOPs", "",
                  f"batch {s['batch']}, median of {s['repeats']} rounds of {s['steps']} steps "
                  f"(the eb run's dense net, its p={s['ratio']:g} ticket, the ticket rounded "
                  f"to x{s['round_multiple']} widths):", "",
                  step_bench.format_step_table(s["rows"])]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> str:
    """Test accuracy vs total training FLOPs, one marker per method (the paper's Fig. 5)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from eb_tf import io_utils  # pylint: disable=import-outside-toplevel
    markers = {"dense": "s", "ns": "^", "lt": "v", "eb": "*", "eb_int8": "P", "tfmot": "D"}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in markers:
        rows = [r for r in result["rows"] if r["method"] == method]
        if rows:
            ax.scatter([r["flops"] for r in rows], [r["test_acc"] for r in rows],
                       marker=markers[method], s=90 if method == "eb" else 55, label=method)
            for r in rows:
                if r["ratio"] is not None:
                    ax.annotate(f"p={r['ratio']:g}", (r["flops"], r["test_acc"]),
                                textcoords="offset points", xytext=(5, 4), fontsize=8)
    cfg = result["config"]
    ax.set_xlabel("total training FLOPs")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{cfg['model']} w{cfg['width']:g}, {os.path.basename(cfg['dataset'])}, "
                 f"T={cfg['epochs']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    io_utils.atomic_write_bytes(path, _png(fig))
    plt.close(fig)
    return path


def _png(fig) -> bytes:
    import io  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
