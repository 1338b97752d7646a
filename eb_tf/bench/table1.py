"""Paper Table 1 at this scale: the retrain accuracy of tickets drawn at the EB epoch and later.

`run_table1(config, workdir)` runs, for each lr schedule of `config.table1_schedules`
(presets of `eb_tf.pipeline.schedules.PRESETS`: `paper`, lr 0.1, and `large_lr`, lr 0.5
after 5 warm-up epochs), one dense search with L1 on the BN gammas to T
(`keep_training`: the ground-truth ticket of epoch T exists) that keeps every epoch's
mask and weights (`config.draw_epochs` = 1..T; VGG-16 width 0.25: ~3.7 MB an epoch).
It draws the tickets of epochs t (the EB epoch), 2t, T/2 and T (clipped to T,
deduplicated; T/2 and T alone when no ticket emerged) and retrains each from its drawn
weights on one schedule for all: `config.table1_retrain_epochs` epochs (0 = T) of the
`paper` schedule (lr 0.1, /10 at 50% and 75%), each in a run folder of its own
(`eb_tf.pipeline.draw.draw_saved`, then `eb_tf.pipeline.retrain.retrain`):

    workdir/<schedule>/search/     the search (an `eb_tf.pipeline.runner.run` folder)
    workdir/<schedule>/e<epoch>/   the ticket drawn at that epoch and its retrain
    workdir/table1.json, table1.md, table1.png (retrain accuracy vs draw epoch)
    workdir/fig3_<schedule>.png (+ .npy)   the mask-distance heatmap (paper Fig. 3)

Every figure of table1.json is read from those folders (report.json, the search's mask
history). Acceptance checks: each schedule's EB ticket retrains to at least the ground
truth's test accuracy - `TOLERANCE`; each schedule with a larger lr than the first finds
its ticket no later. Run again to resume: a finished sub-run is skipped, an interrupted
one continues from its last epoch.

Example:

    from configs import bench_cifar10
    from eb_tf.bench import table1
    result = table1.run_table1(bench_cifar10.get_config("table1_smoke"), "/tmp/table1")
    [(s["schedule"], s["eb_epoch"], s["draw_epochs"]) for s in result["schedules"]]
"""
import os
from typing import List, Optional

from eb_tf import io_utils
from eb_tf.bench import benchmark
from eb_tf.pipeline import build
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import (draw, mask_plots, plots, retrain, run_dir, run_lock, runner,
                            schedules, trainer, widths)
from eb_tf.sparsity import masks as masks_lib

__all__ = ["run_table1", "search_config", "retrain_config", "draw_epochs", "collect",
           "markdown", "TOLERANCE", "SCHEMA_VERSION", "RETRAIN_SCHEDULE"]

SCHEMA_VERSION = 1
TOLERANCE = 0.005          # the EB ticket may retrain to 0.5 pt below the ground truth
RETRAIN_SCHEDULE = "paper"  # the one retrain schedule of every ticket


def _scheduled(run_values: dict, preset: str, **fields) -> eb_config.RunConfig:
    s = schedules.PRESETS[preset]
    return eb_config.from_config_dict({
        **run_values, "lr": s["lr"], "lr_milestones": tuple(s["milestones"]),
        "lr_decay": s["decay"], "warmup_epochs": s["warmup_epochs"], "method": "eb",
        "retrain": "inherit", "export": "none", **fields})


def search_config(run_values: dict, schedule: str) -> eb_config.RunConfig:
    """The search of `schedule`: eb with L1 to T, every epoch's mask and weights kept."""
    epochs = eb_config.from_config_dict({**run_values, "method": "eb"}).epochs
    return _scheduled(run_values, schedule, keep_training=True,
                      draw_epochs=tuple(range(1, epochs + 1)))


def retrain_config(run_values: dict, epochs: int = 0) -> eb_config.RunConfig:
    """The run config every ticket retrains under: `epochs` (0 = T) of `RETRAIN_SCHEDULE`."""
    base = eb_config.from_config_dict({**run_values, "method": "eb"})
    epochs = epochs or base.epochs
    return _scheduled(run_values, RETRAIN_SCHEDULE, epochs=epochs, keep_training=False,
                      draw_epochs=(), window=max(2, min(base.window, epochs)))


def draw_epochs(eb_epoch: Optional[int], epochs: int) -> List[dict]:
    """[{"epoch", "roles"}] of a search's tickets: t, 2t, T/2 and T, clipped to [1, T],
    deduplicated, in order (T/2 and T alone when `eb_epoch` is None).

    Example:
      >>> draw_epochs(15, 60)
      [{'epoch': 15, 'roles': ['EB']}, {'epoch': 30, 'roles': ['2xEB', 'T/2']},
       {'epoch': 60, 'roles': ['T']}]
    """
    wanted = ([("EB", eb_epoch), ("2xEB", 2 * eb_epoch)] if eb_epoch else []) + \
        [("T/2", epochs // 2), ("T", epochs)]
    out = {}
    for role, epoch in wanted:
        out.setdefault(min(max(int(epoch), 1), epochs), []).append(role)
    return [{"epoch": e, "roles": roles} for e, roles in sorted(out.items())]


def _finished(folder: str, cfg, phase: str) -> bool:
    """True if `folder` holds a run of `cfg` whose `phase` is done (another config:
    the ValueError of `RunDir.open`, naming the differing fields)."""
    if not os.path.exists(os.path.join(folder, "config.json")):
        return False
    with run_lock.hold(folder):
        return run_dir.RunDir.open(folder, cfg).phase_done(phase)


def _ticket(cfg, folder: str, search: str, epoch: int, splits) -> None:
    """Draws epoch `epoch` of the search in `search` into `folder` and retrains it."""
    if _finished(folder, cfg, "retrain"):
        return
    with run_lock.hold(folder), build.determinism(cfg):
        rd = run_dir.RunDir.open(folder, cfg)
        draw.draw_saved(cfg, rd, search, epoch, splits)
        retrain.retrain(cfg, rd, splits)
        rd.update_report(total=run_dir.totals(rd.report()))


def run_table1(config, workdir: str, splits=None) -> dict:
    """Runs (or resumes) the searches and the tickets; writes table1.json/.md/.png.

    Args:
      config: a bench ConfigDict or dict (a run config plus the bench fields), e.g.
        `configs/bench_cifar10.py`'s `get_config("table1")`; one pruning ratio.
      workdir: the study's folder (one sub-folder per schedule).
      splits: optional `eb_tf.data` Splits instead of loading `config.dataset`.

    Returns:
      The table1.json dict (see `collect`) with `files`.

    Raises:
      ValueError: a bad run or bench field (named), several ratios, `config.seeds`, or
        what the pipeline rejects.
    """
    run_values, options = benchmark.split_config(config)
    if options.seeds:
        raise ValueError(f"config.seeds={','.join(map(str, options.seeds))!r} is invalid for "
                         "config.study='table1': it runs config.seed alone; set seeds=''")
    base = eb_config.from_config_dict({**run_values, "method": "eb"})
    if len(base.ratios) != 1 or base.ratios == eb_config.AUTO_RATIOS:
        raise ValueError(f"config.ratios={base.ratios!r} is invalid for config.study='table1': "
                         "give one pruning ratio, e.g. --config.ratios=0.5")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if splits is None:
        benchmark.prepare_data(base, options)
        splits = build.load_splits(base)
    ticket_cfg = retrain_config(run_values, options.table1_retrain_epochs)
    for name in options.table1_schedules:
        cfg, folder = search_config(run_values, name), os.path.join(workdir, name, "search")
        if cfg.verbose:
            print(f"eb_bench table1: {name} search in {folder}", flush=True)
        if not _finished(folder, cfg, "search"):
            runner.run(cfg, folder, phases=("search",), splits=splits, print_summary=False)
        eb_epoch = _eb_entry(folder, base.ratios[0])["found_epoch"]
        for d in draw_epochs(eb_epoch, cfg.epochs):
            sub = os.path.join(workdir, name, f"e{d['epoch']}")
            if cfg.verbose:
                print(f"eb_bench table1: {name} ticket of epoch {d['epoch']} in {sub}",
                      flush=True)
            _ticket(ticket_cfg, sub, folder, d["epoch"], splits)
    return _write(collect(workdir, base, options), workdir, base.ratios[0])


def _eb_entry(search: str, ratio: float) -> dict:
    return io_utils.read_json(os.path.join(search, "report.json"))["eb"][run_dir.ratio_name(ratio)]


def _schedule_row(workdir: str, name: str, ratio: float, epochs: int) -> dict:
    """One schedule of table1.json: its search and its tickets, read from the folders."""
    search, key = os.path.join(name, "search"), run_dir.ratio_name(ratio)
    entry = _eb_entry(os.path.join(workdir, search), ratio)
    eb_epoch = entry["found_epoch"]
    history = trainer.read_mask_history(os.path.join(workdir, search, "search", "masks",
                                                     f"{run_dir.ratio_key(ratio)}.npz"))
    masks = dict(zip(history["epochs"].tolist(), history["masks"]))
    phase = io_utils.read_json(os.path.join(workdir, search, "report.json"))["phases"]["search"]
    tickets = []
    for d in draw_epochs(eb_epoch, epochs):
        sub = os.path.join(name, f"e{d['epoch']}")
        report = io_utils.read_json(os.path.join(workdir, sub, "report.json"))
        meta, final = report["ticket"][key], report["final"][key]
        trained = report["phases"]["retrain"]["by_ratio"][key]
        tickets.append({
            **d, "run_dir": sub, "found": meta["found"], "flops_ratio": meta["flops_ratio"],
            "params": meta["params"], "flops": meta["flops"],
            "drawn_val_acc": meta["drawn_accuracy"]["validation"],
            "val_acc": final["validation"], "test_acc": final["test"],
            "retrain_epochs": trained["epochs"], "retrain_seconds": trained["seconds"],
            "mask_distance_to_T": masks_lib.mask_distance(masks[d["epoch"]], masks[epochs])})
    preset = schedules.PRESETS[name]
    return {"schedule": name, "lr": preset["lr"], "warmup_epochs": preset["warmup_epochs"],
            "run_dir": search, "eb_epoch": eb_epoch, "found": eb_epoch is not None,
            "t_over_T": None if eb_epoch is None else eb_epoch / epochs,
            "threshold": entry["threshold"], "window": entry["window"],
            "search_epochs": phase["epochs"], "search_seconds": phase["seconds"],
            "draw_epochs": [d["epoch"] for d in draw_epochs(eb_epoch, epochs)],
            "tickets": tickets, "heatmap": f"fig3_{name}.png"}


def _checks(rows: List[dict], epochs: int) -> List[dict]:
    """The acceptance checks of the rows (see the module docstring)."""
    out = []
    for s in rows:
        by_epoch = {t["epoch"]: t for t in s["tickets"]}
        eb = by_epoch[s["eb_epoch"]]["test_acc"] if s["found"] else None
        truth = by_epoch[epochs]["test_acc"]
        out.append({"check": "eb_vs_ground_truth", "schedule": s["schedule"],
                    "eb_epoch": s["eb_epoch"], "eb_acc": eb, "ground_truth_acc": truth,
                    "tolerance": TOLERANCE,
                    "passed": eb is not None and eb >= truth - TOLERANCE})
    first = rows[0]
    for s in rows[1:]:
        if s["lr"] > first["lr"]:
            out.append({"check": "larger_lr_no_later", "schedule": s["schedule"],
                        "baseline": first["schedule"], "eb_epoch": s["eb_epoch"],
                        "baseline_eb_epoch": first["eb_epoch"],
                        "passed": s["found"] and (not first["found"]
                                                  or s["eb_epoch"] <= first["eb_epoch"])})
    return out


def collect(workdir: str, base: eb_config.RunConfig, options) -> dict:
    """The table1.json dict of a finished study, read from its run folders.

    Keys: `config` (the profile's run config), `ratio`, `epochs` (T), `options`,
    `retrain` (the tickets' one schedule), `machine`, `versions`, `schedules` (per
    schedule: `eb_epoch` (None: no ticket), `t_over_T`, `draw_epochs`, the search's
    epochs and seconds, `heatmap`, and `tickets`: per draw epoch its `roles`, `run_dir`,
    `flops_ratio`, `params`, `flops`, `drawn_val_acc`, `val_acc`, `test_acc`,
    `retrain_epochs`, `retrain_seconds`, `mask_distance_to_T`), `checks` (each with
    `passed`), `notes`.
    """
    workdir = os.path.abspath(workdir)
    rows = [_schedule_row(workdir, name, base.ratios[0], base.epochs)
            for name in options.table1_schedules]
    ticket_cfg = io_utils.read_json(os.path.join(workdir, rows[0]["tickets"][0]["run_dir"],
                                                 "config.json"))["config"]
    notes = [f"{s['schedule']}: no EB ticket emerged within T = {base.epochs} epochs "
             f"(threshold {s['threshold']:g}, window {s['window']}): tickets drawn at T/2 "
             "and T only" for s in rows if not s["found"]]
    config = base.to_dict()
    config.pop("method")
    return {"schema_version": SCHEMA_VERSION, "config": config, "ratio": base.ratios[0],
            "epochs": base.epochs,
            "options": {"table1_schedules": list(options.table1_schedules),
                        "table1_retrain_epochs": options.table1_retrain_epochs},
            "retrain": {k: ticket_cfg[k] for k in ("epochs", "lr", "lr_milestones",
                                                   "lr_decay", "warmup_epochs", "retrain_l1")},
            "machine": {"device": widths.device_descriptor()},
            "versions": run_dir.versions(), "schedules": rows,
            "checks": _checks(rows, base.epochs), "notes": notes}


def _check_line(c: dict) -> str:
    verdict = "PASS" if c["passed"] else "FAIL"
    if c["check"] == "eb_vs_ground_truth":
        if c["eb_acc"] is None:
            return f"- {verdict} {c['schedule']}: no EB ticket emerged, nothing to compare"
        return (f"- {verdict} {c['schedule']}: EB ticket (epoch {c['eb_epoch']}) retrains to "
                f"{c['eb_acc']:.4f}, ground truth (epoch T) {c['ground_truth_acc']:.4f}; "
                f"needs >= {c['ground_truth_acc'] - c['tolerance']:.4f} (gap "
                f"{100 * (c['eb_acc'] - c['ground_truth_acc']):+.2f} pt)")
    return (f"- {verdict} {c['schedule']} finds the ticket no later than {c['baseline']}: "
            f"EB epoch {c['eb_epoch']} vs {c['baseline_eb_epoch']}")


def _acc(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(result: dict) -> str:
    """table1.md: the table, the acceptance lines with their numbers, the notes."""
    cfg, r = result["config"], result["retrain"]
    decays = ", ".join(f"{m:.0%}" for m in r["lr_milestones"])
    lines = [f"# Table 1: tickets drawn at the EB epoch and later, retrained ({cfg['model']} "
             f"w{cfg['width']:g} on {cfg['dataset']}, T = {result['epochs']}, "
             f"p = {result['ratio']:g})", "",
             f"Every ticket: inherited weights of its draw epoch, retrained {r['epochs']} epochs "
             f"at lr {r['lr']:g}, x{r['lr_decay']:g} at {decays} of the retrain. Machine: "
             f"{result['machine']['device']}.", "",
             "| schedule | EB epoch t | draw epoch | role | FLOPs ratio | mask dist. to T | "
             "drawn val acc | retrain test acc | retrain s |", "| --- " * 9 + "|"]
    for s in result["schedules"]:
        for t in s["tickets"]:
            lines.append(
                f"| {s['schedule']} (lr {s['lr']:g}) | {s['eb_epoch'] or 'none'} | {t['epoch']} "
                f"| {', '.join(t['roles'])} | {t['flops_ratio']:.3f} | "
                f"{t['mask_distance_to_T']:.3f} | {_acc(t['drawn_val_acc'])} | "
                f"{t['test_acc']:.4f} | {t['retrain_seconds']:.0f} |")
    lines += ["", "## Acceptance", ""] + [_check_line(c) for c in result["checks"]]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]] + [
        "- Plot: table1.png (retrain test accuracy vs draw epoch); mask-distance heatmaps "
        "(paper Fig. 3, EB epoch, window and threshold marked): " +
        ", ".join(s["heatmap"] for s in result["schedules"]) + "."]
    return "\n".join(lines) + "\n"


def _write(result: dict, workdir: str, ratio: float) -> dict:
    files = {"json": os.path.join(workdir, "table1.json"),
             "markdown": os.path.join(workdir, "table1.md"),
             "plot": os.path.join(workdir, "table1.png"),
             "heatmaps": [os.path.join(workdir, s["heatmap"]) for s in result["schedules"]]}
    for s, path in zip(result["schedules"], files["heatmaps"]):
        mask_plots.plot_distance_matrix(
            os.path.join(workdir, s["run_dir"]), ratio, path,
            title=f"mask distance, {s['schedule']} (lr {s['lr']:g}), p = {ratio:g}")
    plots.accuracy_vs_draw_epoch(
        {f"{s['schedule']} (lr {s['lr']:g})": {
            "epochs": [t["epoch"] for t in s["tickets"]],
            "accuracy": [t["test_acc"] for t in s["tickets"]], "eb_epoch": s["eb_epoch"]}
         for s in result["schedules"]},
        title=f"retrain accuracy vs draw epoch (T = {result['epochs']}, "
              f"p = {ratio:g})", path=files["plot"])
    result["files"] = files
    io_utils.atomic_write_text(files["markdown"], markdown(result))
    io_utils.atomic_write_json(files["json"], result)
    return result
