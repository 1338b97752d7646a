"""Reports of a tuning run: the results table (markdown + JSON) and the chosen config file.

`write_results(folder, summary)` writes `results.json` (everything: budget, every trial
with its candidate metrics, the chosen trial, the total cost) and `results.md` (one
row per trial, feasible or not, the chosen one marked). `write_config(path, cfg, note)`
writes the chosen setting as a config file for `eb_train`, in the `configs/*.py`
style: `get_config(arg=None)` starting from the paper defaults, overriding only the
fields that differ, so it runs as is:

    python -m binaries.eb_train --config=WORKDIR/chosen_config.py --workdir=/tmp/eb_tuned

Example:

    from eb_tf.tuning import report
    report.write_config("/tmp/chosen.py", run_cfg, "p=0.5 under 1e6 FLOPs")
"""
import dataclasses
import os
from typing import Iterable, List, Optional

from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config

__all__ = ["markdown_table", "cost_totals", "write_results", "config_text", "write_config"]

_COLUMNS = (("trial", "trial"), ("status", "status"), ("p", "ratio"),
            ("threshold", "threshold"), ("L1", "l1"), ("lr", "lr"), ("EB epoch", "epoch"),
            ("found", "found"), ("FLOPs", "flops"), ("params", "params"),
            ("latency ms", "latency_ms"), ("val acc", "val_accuracy"),
            ("feasible", "feasible"), ("score", "score"))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: List[dict], chosen: Optional[str] = None) -> str:
    """One markdown row per trial; the chosen trial's id is marked with `*`."""
    head = "| " + " | ".join(title for title, _ in _COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        cells = [_cell(row.get(key)) for _, key in _COLUMNS]
        if row.get("trial") == chosen:
            cells[0] += " *"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_totals(search_costs: Iterable[dict], rows: List[dict]) -> dict:
    """Totals over the searches (their phase records) and the distinct candidates' retrains."""
    searches = list(search_costs)
    cands = {(r["ratio"], r["threshold"], r["l1"], r["lr"]): r for r in rows if "flops" in r}
    return {"search_runs": len(searches),
            "search_epochs": sum(c["epochs"] for c in searches),
            "retrain_epochs": sum(r.get("retrain_epochs", 0) for r in cands.values()),
            "seconds": round(sum(c["seconds"] for c in searches) + sum(
                r.get("retrain_seconds", 0.0) for r in cands.values()), 3),
            "train_flops": sum(c["flops"] for c in searches) + sum(
                r.get("retrain_flops", 0) for r in cands.values())}


def _budget_text(budget: dict) -> str:
    parts = [f"{k} <= {v:g}" for k, v in budget.items() if v]
    return " and ".join(parts) if parts else "none"


def write_results(folder: str, summary: dict) -> dict:
    """Writes `results.json` and `results.md` into `folder`; returns their paths.

    `summary` holds "budget" ({max_flops, max_latency_ms}), "rows" (one dict per trial),
    "chosen" (the chosen row or None) and "cost" (totals).
    """
    json_path = os.path.join(folder, "results.json")
    md_path = os.path.join(folder, "results.md")
    io_utils.atomic_write_json(json_path, summary)
    chosen = summary.get("chosen")
    cost = summary.get("cost", {})
    lines = [f"# eb_tune results ({summary.get('oracle', '?')} oracle, "
             f"{len(summary['rows'])} trials)", "",
             f"Budget: {_budget_text(summary['budget'])}. Objective: validation accuracy "
             "after a brief retrain of the drawn ticket; candidates over budget are kept "
             f"with score {summary.get('infeasible_score', -1.0):g}.", "",
             markdown_table(summary["rows"], chosen and chosen["trial"]), ""]
    if chosen:
        lines.append(f"Chosen (*): trial {chosen['trial']}: p={chosen['ratio']:g}, threshold="
                     f"{chosen['threshold']:g}, l1={chosen['l1']:g}, lr={chosen['lr']:g}; "
                     f"{chosen['flops']:,} FLOPs, validation accuracy "
                     f"{chosen['val_accuracy']:.4f}.")
    else:
        lines.append("No feasible candidate: no trial meets the budget.")
    lines += ["", f"Cost: {cost.get('search_runs', 0)} search run(s), "
              f"{cost.get('search_epochs', 0)} search epochs, "
              f"{cost.get('retrain_epochs', 0)} retrain epochs, "
              f"{cost.get('seconds', 0.0):.1f} s, "
              f"{cost.get('train_flops', 0):.3g} training FLOPs.", ""]
    io_utils.atomic_write_text(md_path, "\n".join(lines))
    return {"json": json_path, "markdown": md_path}


def config_text(cfg: eb_config.RunConfig, note: str) -> str:
    """A `configs/*.py`-style file whose `get_config()` returns `cfg` (defaults elided)."""
    defaults = dataclasses.asdict(eb_config.RunConfig())
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if defaults[k] != v}
    body = "".join(f"    {k!r}: {v!r},\n" for k, v in values.items())
    return (f'r"""python -m binaries.eb_train --config=THIS_FILE --workdir=/tmp/eb_tuned\n\n'
            f"Written by eb_tune (eb_tf.tuning): {note}\n"
            '"""\nfrom eb_tf.pipeline import config as eb_config\n\n'
            f"VALUES = {{\n{body}}}\n\n\n"
            "def get_config(arg=None):\n"
            "    cfg = eb_config.default_config()\n"
            "    cfg.update(VALUES)\n"
            "    return eb_config.apply_arg(cfg, arg)\n")


def write_config(path: str, cfg: eb_config.RunConfig, note: str) -> str:
    """Writes `config_text(cfg, note)` to `path` atomically and returns the path."""
    io_utils.atomic_write_text(path, config_text(cfg, note).replace(
        "THIS_FILE", os.path.abspath(path)))
    return path
