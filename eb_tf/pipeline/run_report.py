"""`report.md` of a run folder: the summary and the plots a user would rather look at.

`write` reads the run folder (nothing is trained or loaded into Keras) and writes, each
file atomically, the PNGs into `RUN/report/` (the folder replaced as a whole) and then
`RUN/report.md`, which links them:

    report/training.png        loss and accuracy per epoch: the dense search, then each
                               ticket's retrain, on one axis of epochs trained
    report/mask_distance.png   EarlyBird's mask distance per epoch, threshold, EB epoch
    report/heatmap_p0.5.png    the pairwise mask distances of the search (paper Fig. 3)
    report/channels_p0.5.png   kept vs total channels per BN layer of the ticket

Sources: `search/history.json` (or, mid-search, the search checkpoint's state), each
retrain checkpoint's `retrain/p<r>/ckpt/state.json` history (the retrain writes no
history file of its own), report.json's `eb` entries, `search/masks/p<r>.npz` and
`tickets/p<r>/meta.json`. A phase that has not run yet leaves its section out, so the
phase binaries' runs get a report too. `figures` gives the same figures without
writing anything (the plotted series are the run's numbers).

Example:

    from eb_tf.pipeline import run_report
    path = run_report.write("/tmp/eb_quickstart")   # /tmp/eb_quickstart/report.md
    figs = run_report.figures("/tmp/eb_quickstart")
    figs["training"].axes[0].lines[0].get_ydata()   # the search's loss per epoch
"""
import os
from typing import Dict, List, Optional

from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import mask_plots, methods, plots, run_dir, trainer

__all__ = ["write", "figures", "histories", "REPORT_FILE", "FIGURE_DIR"]

REPORT_FILE = "report.md"
FIGURE_DIR = "report"
SEARCH = "search"


def _resolve(rd_or_workdir, cfg):
    """(absolute workdir, RunConfig) of a RunDir or a folder; read-only (no RunDir.open:
    it would tidy a folder another process may be working in)."""
    if isinstance(rd_or_workdir, run_dir.RunDir):
        workdir, cfg = rd_or_workdir.path, cfg if cfg is not None else rd_or_workdir.cfg
    else:
        workdir = os.path.abspath(os.fspath(rd_or_workdir))
    if cfg is None:
        path = os.path.join(workdir, "config.json")
        if not os.path.exists(path):
            raise ValueError(f"{workdir!r} is not a run folder (no config.json)")
        cfg = io_utils.read_json(path)["config"]
    if not isinstance(cfg, eb_config.RunConfig):
        cfg = eb_config.from_config_dict(cfg)
    return workdir, cfg


def _read(path: str, default=None):
    return io_utils.read_json(path) if os.path.exists(path) else default


def _checkpoint_history(ckpt_dir: str) -> List[dict]:
    state = _read(os.path.join(ckpt_dir, trainer.STATE_FILE), {})
    return list(state.get("history") or [])


def histories(rd_or_workdir, cfg=None) -> Dict[str, List[dict]]:
    """{"search": per-epoch logs, "retrain p=<r>": ...} of the phases that ran.

    Each entry is the trainer's record of one epoch: `epoch` (of the lr schedule, from
    1), `loss`, `accuracy`, `val_loss`, `val_accuracy`, `lr`, `seconds`, ...
    """
    workdir, cfg = _resolve(rd_or_workdir, cfg)
    out = {}
    search = _read(os.path.join(workdir, "search", "history.json"))
    if search is None:  # the search has not finished: its last checkpoint
        search = _checkpoint_history(os.path.join(workdir, "search", "ckpt"))
    if search:
        out[SEARCH] = search
    for ratio in cfg.ratios:
        history = _checkpoint_history(os.path.join(workdir, "retrain", run_dir.ratio_key(ratio),
                                                   "ckpt"))
        if history:
            out[f"retrain p={ratio:g}"] = history
    return out


def _columns(history: List[dict], offset: int = 0) -> dict:
    columns = {"epochs": [h["epoch"] + offset for h in history]}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if any(name in h for h in history):
            columns[name] = [h.get(name) for h in history]
    return columns


def _training_figure(workdir, cfg, report, logs):
    """Search epochs as they are; a retrain's epoch e at search_end + (e - its start):
    for `inherit` (start = t = search end) that is e itself, one budget of T epochs."""
    search_end = logs[SEARCH][-1]["epoch"] if SEARCH in logs else 0
    curves = {}
    for name, history in logs.items():
        offset = 0
        if name != SEARCH:
            ratio = name.split("=", 1)[1]
            meta = _read(os.path.join(workdir, "tickets", f"p{ratio}", "meta.json"), {})
            start = meta.get("retrain_start_epoch", history[0]["epoch"] - 1)
            offset = search_end - start
        curves[name] = _columns(history, offset)
    marks = {f"EB epoch p={r}": e["found_epoch"] for r, e in report.get("eb", {}).items()
             if "@" not in r and e.get("found_epoch") is not None}
    title = (f"{cfg.model} w{cfg.width:g} on {os.path.basename(cfg.dataset)}, method "
             f"{cfg.method}, T = {cfg.epochs}")
    return plots.training_curves(curves, marks, title, xlabel="epochs trained (the search, "
                                 "then the retrain)")


def _distance_figure(workdir, cfg, report):
    entries = {r: report["eb"][run_dir.ratio_name(r)] for r in cfg.ratios
               if report.get("eb", {}).get(run_dir.ratio_name(r), {}).get("distances")}
    if not entries:  # no EarlyBird tracked the masks (snip, thinet: their own choice)
        return None
    distances, previous, found = {}, {}, {}
    for ratio, entry in entries.items():
        label = f"p={ratio:g}"
        distances[label] = entry.get("distances") or []
        found[label] = entry.get("found_epoch")
        try:
            _, matrix = mask_plots.run_distance_matrix(workdir, ratio)
            previous[label] = [float(matrix[i, i - 1]) for i in range(1, len(matrix))]
        except ValueError:  # no masks recorded
            pass
    first = next(iter(entries.values()))
    return plots.mask_distances(distances, first.get("threshold", cfg.threshold), found,
                                previous=previous or None, window=first.get("window", cfg.window),
                                title="EarlyBird: mask distance per epoch")


def figures(rd_or_workdir, cfg=None) -> dict:
    """{name: matplotlib Figure} of the run: `training`, `mask_distance`,
    `heatmap_p<r>` and `channels_p<r>` (those whose data the folder holds)."""
    workdir, cfg = _resolve(rd_or_workdir, cfg)
    report = _read(os.path.join(workdir, "report.json"), {})
    logs = histories(workdir, cfg)
    out = {}
    if logs:
        out["training"] = _training_figure(workdir, cfg, report, logs)
    if methods.get(cfg.method).prunes:
        figure = _distance_figure(workdir, cfg, report)
        if figure is not None:
            out["mask_distance"] = figure
        for ratio in cfg.ratios:
            key = run_dir.ratio_key(ratio)
            if os.path.exists(os.path.join(workdir, "search", "masks", f"{key}.npz")):
                epochs, matrix = mask_plots.run_distance_matrix(workdir, ratio)
                out[f"heatmap_{key}"] = plots.distance_heatmap(
                    epochs, matrix, f"mask distance between epochs, p = {ratio:g}",
                    **mask_plots.eb_marks(workdir, ratio))
            meta = _read(os.path.join(workdir, "tickets", key, "meta.json"))
            if meta and meta.get("channels"):
                out[f"channels_{key}"] = plots.kept_channels(
                    meta["channels"], f"ticket p = {ratio:g}: {meta['channels_kept']} of "
                    f"{meta['channels_total']} channels kept")
    return out


def _axis_text(cfg) -> str:
    mode = methods.get(cfg.method).retrain_mode(cfg) if methods.get(cfg.method).prunes else None
    if mode is None:
        return "the method does not prune, there is no retrain."
    if mode == "inherit" and methods.get(cfg.method).stops_at_ticket and not cfg.keep_training:
        return ("the retrain (mode `inherit`) continues the search's learning-rate schedule "
                "from the EB epoch t to T, so the axis is the schedule's epoch and search + "
                "retrain = T epochs.")
    return (f"the retrain (mode `{mode}`) starts its schedule at the epoch meta.json "
            "records (`retrain_start_epoch`); its epochs are drawn after the search's last one.")


def _markdown(workdir, cfg, report, names) -> str:
    lines = [f"# Run report: {cfg.model} on {os.path.basename(cfg.dataset)}, method "
             f"{cfg.method}, T = {cfg.epochs}", "",
             f"Run folder `{workdir}`, config `{report.get('config_hash')}` "
             "(config.json). The numbers are report.json's; the curves are the per-epoch "
             "logs of the search and the retrain checkpoints. Written at the end of every "
             "run; `eb_tf.pipeline.run_report.write(RUN)` writes it again.", "",
             "## Summary", "", "```text", run_dir.summary_table(report), "```", ""]
    eb = {r: report.get("eb", {}).get(run_dir.ratio_name(r), {}) for r in cfg.ratios}
    eb = {r: e for r, e in eb.items() if e.get("distances")}  # tracked by EarlyBird
    found = ", ".join(f"p={r:g} at epoch {e['found_epoch']}" if e.get("found_epoch") else
                      f"p={r:g}: none before epoch {e.get('epoch', '?')}"
                      for r, e in eb.items() if e)
    if "training" in names:
        lines += ["## Loss and accuracy per epoch", "", f"![training curves]({FIGURE_DIR}/"
                  "training.png)", "",
                  "The dense search, then each ticket's retrain, on one axis of epochs "
                  f"trained: {_axis_text(cfg)} Solid: the training batches (augmented, "
                  "regularised), dashed: the validation split; dotted: the EB epoch"
                  + (f" ({found})." if found else "."), ""]
    if "mask_distance" in names:
        lines += ["## Mask distance per epoch", "", f"![mask distance]({FIGURE_DIR}/"
                  "mask_distance.png)", "",
                  f"Per epoch, the largest normalised Hamming distance between that epoch's "
                  f"channel mask and the {cfg.window - 1} before it (undefined until "
                  f"{cfg.window} masks exist); dotted, the distance to the previous epoch's "
                  f"mask. The ticket emerges at the first epoch at or below the threshold "
                  f"{cfg.threshold:g}: {found or 'no ratio tracked'}.", ""]
    for ratio in cfg.ratios:
        key = run_dir.ratio_key(ratio)
        if f"heatmap_{key}" in names:
            lines += [f"## Mask distance between epochs, p = {ratio:g} (paper Fig. 3)", "",
                      f"![mask distance matrix]({FIGURE_DIR}/heatmap_{key}.png)", "",
                      "Entry (i, j): the distance between the masks of epochs i and j (red: "
                      "close). Dashed: the EB epoch, boxed in gold: the window of masks it was "
                      f"compared with; the black border encloses the cells within the "
                      f"threshold (the line on the colour bar). Also: `python -m binaries.mask_distance --workdir={workdir}`.",
                      ""]
        if f"channels_{key}" in names:
            meta = io_utils.read_json(os.path.join(workdir, "tickets", key, "meta.json"))
            lines += [f"## Kept channels per layer, p = {ratio:g}", "",
                      f"![kept channels]({FIGURE_DIR}/channels_{key}.png)", "",
                      f"The ticket drawn at epoch {meta['epoch']} (tickets/{key}/meta.json): "
                      f"{meta['channels_kept']} of {meta['channels_total']} channels, params "
                      f"{meta['dense_params']:,} -> {meta['params']:,}, FLOPs/sample "
                      f"{meta['dense_flops']:,} -> {meta['flops']:,} "
                      f"({meta['flops_ratio']:.1%} of dense).", ""]
            lines += _width_lines(meta)
    return "\n".join(lines)


def _width_lines(meta) -> List[str]:
    """The hardware-aware width choice of a ticket (round_multiple=auto), as a table."""
    choice = meta.get("width_choice")
    if not choice:
        return [f"Widths: round_multiple = {meta.get('round_multiple')} (not measured).", ""]
    budget = choice.get("budget_seconds")
    how = ("cached" if choice["cached"] else f"measured in {choice['seconds']:.1f} s") + \
        ("" if budget is None else f" of a {budget:.1f} s budget")
    if choice.get("source") == "prior":
        unfused = choice.get("unfused") or []
        return [f"Widths: round_multiple = auto took x{choice['multiple']} unmeasured, the latest "
                "choice measured on this device, policy and batch (the exact mask where that "
                "one's ticket is over the FLOPs limit): tracing the candidates would exceed the "
                f"{budget:.1f} s budget (a share of the predicted retrain)."
                + (f" {len(unfused)} BatchNormalizations off that multiple run unfused: "
                   f"{', '.join(unfused)}." if unfused else ""), ""]
    chose = ("per-layer widths" if choice["multiple"] == "layer"
             else f"x{choice['multiple']}")
    lines = [f"Widths: round_multiple = auto chose {chose} on {choice['device']} "
             f"({choice['policy']}, batch {choice['batch_size']}; {how}):",
             "", "| multiple | ms/step (median) | rounds (ms) | MFLOPs/sample |",
             "| ---: | ---: | --- | ---: |"]
    order = sorted(choice["median_ms"], key=lambda m: (m == "layer", int(m) if m.isdigit()
                                                        else 0))
    over = set(choice.get("over_limit", ()))
    for m in order:
        rounds = ", ".join(f"{v:.1f}" for v in choice["ms_rounds"][m])
        lines.append(f"| {m}{' (over the limit)' if m in over else ''} | "
                     f"{choice['median_ms'][m]:.1f} | {rounds} | "
                     f"{choice['flops'][m] / 1e6:.2f} |")
    if over:
        lines += ["", f"Candidates above {choice['max_flops_growth']:g}x the exact ticket's "
                  "FLOPs were measured but not eligible (config.round_max_flops_growth)."]
    layer = choice.get("layer")
    if layer:
        lines += ["", f"Per-layer search ({layer['measured']} layer timings measured, "
                  f"{layer['seconds']:.1f} s): per space x"
                  f"{', x'.join(str(m) for m in layer['assignment'])}; summed layer ms "
                  f"{layer['predicted_ms']:.1f} against uniform "
                  + ", ".join(f"x{m} {v:.1f}" for m, v in layer["uniform_ms"].items())
                  + (" (its widths equal a uniform candidate's: not timed apart)."
                     if "layer" not in choice["median_ms"] else ".")]
        if layer.get("unfused"):
            lines.append(f"BatchNormalizations run unfused at their odd widths (faster there "
                         f"than oneDNN's fused kernel): {', '.join(layer['unfused'])}.")
    return lines + [""]


def write(rd_or_workdir, cfg=None) -> str:
    """Writes `RUN/report/*.png` and `RUN/report.md`; returns the report.md path.

    Args:
      rd_or_workdir: an `eb_tf.pipeline.run_dir.RunDir` or a run folder path.
      cfg: the run's config (a `RunConfig`, ConfigDict or dict); default: the RunDir's,
        or the folder's config.json.

    Raises:
      ValueError: the folder is not a run folder (no config.json).
    """
    workdir, cfg = _resolve(rd_or_workdir, cfg)
    report = _read(os.path.join(workdir, "report.json"), {})
    figs = figures(workdir, cfg)
    with io_utils.atomic_dir(os.path.join(workdir, FIGURE_DIR)) as tmp:
        for name, fig in figs.items():
            plots.save(fig, os.path.join(tmp, f"{name}.png"))
    return io_utils.atomic_write_text(os.path.join(workdir, REPORT_FILE),
                                      _markdown(workdir, cfg, report, set(figs)) + "\n")
