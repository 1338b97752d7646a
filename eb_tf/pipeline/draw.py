"""The draw phase of EB Train: turn each ratio's mask into a physically smaller ticket.

For each pruning ratio: take the mask of the ticket epoch t (the EarlyBird files of the
search) for a method whose record `stops_at_ticket`, else (or if no ticket emerged) draw
it from the last epoch; load into the dense model the weights the retrain starts from,
as the record's retrain mode says (`eb_tf.pipeline.methods`: epoch t for `inherit`, the
last epoch for `trained`, epoch k for `rewind`), strip low-precision wrappers, round the
mask to `config.round_multiple` (`auto`: the width multiple measured fastest here,
`eb_tf.pipeline.widths`, for at most `widths.BUDGET_FRACTION` of the ticket's predicted
retrain: T - t epochs at the median search epoch x the kept channel share), then `prune`. A record with its own `select` (SNIP, ThiNet:
`eb_tf.pipeline.baseline_methods`) chooses the channels itself, on those weights, and
may hand back a changed copy to prune (ThiNet's rescaled kernels); its scoring passes
are counted in the phase's `flops` (`scoring_flops`) and in meta.json's `scoring`
(flops, images, seconds, and `x_dense`: in units of the dense run). Each ticket lands in `tickets/p{r:g}/` (`model.keras`,
`mask.npz`, `meta.json` with params, FLOPs, per-layer FLOPs and the retrain start
epoch), written atomically. With `draw_epochs` the tickets drawn at those epochs
(paper Fig. 1) land in `tickets/p{r:g}_e{t}/`. `draw_saved` draws a saved epoch of another
run folder's search as the ticket of a run of its own (its own retrain schedule: Table 1).

Pruning changes the inputs of the ticket's BN layers, so the moving statistics it
inherits are stale (the ticket as drawn scores near chance). Unless the retrain mode is
`reinit` (a fresh initialisation stays one), the draw re-estimates them
(`eb_tf.pipeline.bn_stats.recalibrate`: each BN's exact input mean and variance in
training-mode forward passes) on the first `CALIBRATION_BATCHES` full batches of
`splits.calibration_batches` (training images in a fixed order, un-augmented: the same
on every run and resume) and saves them in `model.keras`. `meta.json` records them
(`bn_calibration`: batches, samples, layers, flops) and the ticket's validation accuracy
before retraining (`drawn_accuracy`: after and before the re-estimation, on the batches
the search scores). The draw phase's `flops` are the forward passes of the
re-estimation, forward only: ticket forward FLOPs per sample x samples (no x3 as in
`costs.training_flops`: there is no backward pass); the evaluation passes are reported
apart (`eval_flops`), as the search's and retrain's validation passes are not counted.

Example:

    from eb_tf.pipeline import config as eb_config, draw, run_dir
    cfg = eb_config.from_config_dict(run_dir_config)
    draw.draw(cfg, run_dir.RunDir.open("/tmp/run", cfg))   # after the search; loads the data
"""
import os
from typing import Optional

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import keras_for, set_random_seed
from eb_tf.pipeline import bn_stats, costs, methods, run_dir, trainer, widths
from eb_tf.pipeline.build import load_splits
from eb_tf.pipeline.ticket import load_model  # by the Keras that saved it (draw's 0.4 name)
from eb_tf.pruning import bn_kernel
from eb_tf.pruning.channel_summary import summary
from eb_tf.pruning.flops import count_flops, count_params
from eb_tf.pruning.pruner import prune
from eb_tf.quantization import precision as precision_lib
from eb_tf.sparsity.batchnorm import channel_masks

__all__ = ["draw", "draw_saved", "read_mask", "load_model", "CALIBRATION_BATCHES"]

# Batches (of config.batch_size) the BN statistics of a ticket are re-estimated on: 16 x
# 64-256 = 1-4k images, a forward pass well under 1% of a CIFAR epoch's training FLOPs;
# fewer when the training set holds fewer full batches.
CALIBRATION_BATCHES = 16


def _sources(cfg, rd, ratio, entry):
    """(weights file of the draw epoch or None = last epoch, mask file or None,
    weights file to copy into the ticket or None, retrain start epoch).

    A method that `stops_at_ticket` draws at the EB epoch t when the ticket emerged
    (else at the last epoch); the others draw at the last epoch T. The retrain mode of
    the method's record says which weights the ticket gets and where its schedule starts.
    """
    key = run_dir.ratio_key(ratio)
    method = methods.get(cfg.method)
    found = method.stops_at_ticket and entry["found"]
    t_weights = rd.search_dir("eb", key, run_dir.weights_name(
        "weights", cfg.keras_version)) if found else None
    t_mask = rd.search_dir("eb", key, "mask.npz") if found else None
    t = entry["epoch"]
    if method.retrain_mode(cfg) == "rewind":
        k = cfg.rewind_epoch
        if k > t:
            raise ValueError(f"config.rewind_epoch={k} is after the ticket epoch {t} of ratio "
                             f"{ratio:g}; choose rewind_epoch <= {t}")
        return t_weights, t_mask, rd.search_dir(run_dir.weights_name(
            f"weights_e{k}", cfg.keras_version)), k
    return t_weights, t_mask, t_weights, method.start_epoch(cfg, t)


def draw(cfg, rd, splits=None):
    """Prunes each ratio's ticket into `tickets/p{r}/` (model.keras, mask.npz, meta.json).

    `splits` (None: loaded from the config) gives the BN re-estimation's training
    batches and the validation set the drawn tickets are scored on.
    """
    if rd.phase_done("draw"):
        return
    report = rd.report()
    if not report["phases"].get("search", {}).get("done"):
        raise ValueError(f"draw needs a finished search in --workdir {rd.path!r}; run "
                         "eb_search (or eb_train) first")
    if not methods.get(cfg.method).prunes:
        rd.update_report(phases={"draw": {"done": True, "skipped": f"method={cfg.method}"}})
        return
    if splits is None:
        splits = load_splits(cfg)
    meter = costs.PhaseMeter()
    meter.start()
    dense, dense_info = _load_dense(rd.search_dir("final.keras"))
    last = dense.get_weights()
    tickets = {}
    select = methods.get(cfg.method).select
    for ratio in cfg.ratios:
        entry = report["eb"][run_dir.ratio_name(ratio)]
        t_weights, t_mask, src, start = _sources(cfg, rd, ratio, entry)
        _set_weights(dense, last, src if select is not None else t_weights)
        source, scoring = dense, None
        if select is not None:  # the method's own channel choice (SNIP, ThiNet)
            source, masks, scoring = _select(cfg, select, dense, ratio, splits, dense_info)
        else:
            masks = read_mask(t_mask) if t_mask else channel_masks(
                precision_lib.strip_precision(dense), ratio, cfg.scope, cfg.min_channels)
            _set_weights(dense, last, src)
        # The epoch whose weights and mask are drawn: t for a method that stops at the
        # ticket, else the search's last epoch (ns tracks t too, but draws at T).
        drawn_at = entry["epoch"] if methods.get(cfg.method).stops_at_ticket else \
            report["phases"]["search"].get("last_epoch", entry["epoch"])
        tickets[run_dir.ratio_name(ratio)] = _draw_one(
            cfg, rd.ticket_dir(ratio), source, masks, ratio, drawn_at, start, dense_info,
            found=entry["found"], splits=splits, scoring=scoring,
            budget=_width_budget(cfg, rd.search_dir("history.json"), masks, start))
    for t in cfg.draw_epochs:  # paper Fig. 1: tickets drawn at chosen epochs
        for ratio in cfg.ratios:
            folder = rd.search_dir("eb", f"epoch{t}", run_dir.ratio_key(ratio))
            weights = os.path.join(folder, run_dir.weights_name("weights", cfg.keras_version))
            if os.path.exists(weights):
                _set_weights(dense, last, weights)
                masks = read_mask(os.path.join(folder, "mask.npz"))
                info = _draw_one(cfg, rd.ticket_dir(ratio, t), dense, masks, ratio, t, t,
                                 dense_info, found=False, splits=splits,
                                 budget=_width_budget(cfg, rd.search_dir("history.json"),
                                                      masks, t))
                tickets[f"{run_dir.ratio_name(ratio)}@e{t}"] = info
    meter.stop()
    rd.update_report(ticket=tickets, phases={"draw": _record(meter, tickets, dense_info)})


def draw_saved(cfg, rd, search: str, epoch: int, splits) -> None:
    """The draw phase of `rd` from an epoch that the search of another run folder kept.

    For each ratio of `cfg`, the weights and mask that the search of run folder `search`
    saved at epoch `epoch` (its `config.draw_epochs`: `search/eb/epoch{e}/p{r}/`) are
    drawn into `rd`'s `tickets/p{r}/` as `draw` draws a ticket (rounded, pruned, BN
    statistics re-estimated), to be retrained from epoch 0 of `rd`'s own schedule
    (`retrain.retrain(cfg, rd, splits)`: `cfg.epochs` epochs from the drawn weights;
    paper Table 1). The phase record names its `source` (the search folder relative to
    `rd`, the epoch); the meta's `found` says whether the ticket emerged at `epoch`.

    Raises:
      ValueError: the search did not keep epoch `epoch` (see `config.draw_epochs`).
    """
    if rd.phase_done("draw"):
        return
    meter = costs.PhaseMeter()
    meter.start()
    dense, dense_info = _load_dense(os.path.join(search, "search", "final.keras"))
    eb_entries = io_utils.read_json(os.path.join(search, "report.json")).get("eb", {})
    history = os.path.join(search, "search", "history.json")
    tickets = {}
    for ratio in cfg.ratios:
        folder = os.path.join(search, "search", "eb", f"epoch{epoch}", run_dir.ratio_key(ratio))
        weights = os.path.join(folder, run_dir.weights_name("weights", cfg.keras_version))
        if not os.path.exists(weights):
            raise ValueError(f"the search in {search!r} kept no weights of epoch {epoch} for "
                             f"ratio {ratio:g} (looked for {folder}); list the epoch in its "
                             "config.draw_epochs")
        dense.load_weights(weights)
        masks = read_mask(os.path.join(folder, "mask.npz"))
        found = eb_entries.get(run_dir.ratio_name(ratio), {}).get("found_epoch") == epoch
        tickets[run_dir.ratio_name(ratio)] = _draw_one(
            cfg, rd.ticket_dir(ratio), dense, masks, ratio, epoch, 0, dense_info, found=found,
            splits=splits, budget=_width_budget(cfg, history, masks, 0))
    meter.stop()
    source = {"search": os.path.relpath(os.path.abspath(search), rd.path), "epoch": int(epoch)}
    rd.update_report(ticket=tickets, phases={"draw": {
        **_record(meter, tickets, dense_info), "source": source}})


def _load_dense(path: str):
    """(the search's dense model at `path`, {"params", "flops"} of its float32 net)."""
    dense = load_model(path)
    dense_float = precision_lib.strip_precision(dense)
    return dense, {"params": count_params(dense_float).total,
                   "flops": count_flops(dense_float).total}


def _record(meter, tickets, dense_info) -> dict:
    """The draw phase's report record of `tickets` (their meta) drawn under `meter`."""
    calibrated = [t["bn_calibration"] for t in tickets.values()]
    scored = [t["scoring"] for t in tickets.values() if "scoring" in t]
    return {"done": True, "epochs": 0, "seconds": round(meter.seconds, 3),
            "flops": sum(c.get("flops", 0) for c in calibrated + scored),
            "samples": sum(c.get("samples", 0) for c in calibrated + scored),
            "scoring_flops": sum(c["flops"] for c in scored),
            "eval_flops": sum(t["drawn_accuracy"]["flops"] for t in tickets.values()),
            "precision": "fp32", "energy": meter.energy(), "dense": dense_info}


def _set_weights(model, last, path: Optional[str]):
    if path is None:
        model.set_weights(last)
    else:
        model.load_weights(path)


def read_mask(path):
    """{BN key: bool array} from a mask.npz."""
    with np.load(path) as data:
        return {k: data[k].astype(bool) for k in data.files}


def _select(cfg, select, dense, ratio, splits, dense_info):
    """(model to prune, masks, meta `scoring`) of a method with its own channel choice.

    `scoring.x_dense` is the scoring passes' FLOPs in units of the dense run (T epochs
    of the dense net on this training set): the `s` of the record's predicted cost.
    """
    meter = costs.PhaseMeter()
    meter.start()
    choice = select(cfg, precision_lib.strip_precision(dense), ratio, splits)
    meter.stop()
    run = costs.training_flops(dense_info["flops"],
                               cfg.epochs * trainer.samples_per_epoch(splits))
    return choice.model, dict(choice.masks), {
        "flops": int(choice.flops), "samples": int(choice.samples),
        "seconds": round(meter.seconds, 3), "x_dense": choice.flops / max(run, 1)}


def _width_budget(cfg, path, masks, start) -> Optional[float]:
    """`widths.retrain_budget` of a ticket: T - start epochs at the median search
    epoch's training seconds (search/history.json at `path`) x the kept channel share
    (None without a search history)."""
    history = io_utils.read_json(path) if os.path.exists(path) else []
    seconds = [h.get("train_seconds", h.get("seconds")) for h in history]
    seconds = [s for s in seconds if s is not None]
    if not seconds:
        return None
    kept = float(np.mean(np.concatenate([np.asarray(m, bool) for m in masks.values()])))
    return widths.retrain_budget(cfg.epochs - start, float(np.median(seconds)), kept)


def _draw_one(cfg, folder, dense, masks, ratio, epoch, start, dense_info, found, splits,
              scoring=None, budget=None):
    float_model = precision_lib.strip_precision(dense)
    masks, width_choice = widths.for_run(cfg, float_model, masks, budget)
    pruned = bn_kernel.unfuse(prune(float_model, masks),
                              width_choice.unfused if width_choice else ())
    if methods.get(cfg.method).retrain_mode(cfg) == "reinit":
        set_random_seed(cfg.seed)
        fresh = keras_for(pruned).models.clone_model(pruned)  # same architecture, new weights
        fresh.build(pruned.input_shape)
        pruned = fresh
    flops, params = count_flops(pruned), count_params(pruned)
    calibration, accuracy = _recalibrate(cfg, pruned, splits, flops.total)
    channels = summary(float_model, masks, print_fn=None)
    meta = {"ratio": ratio, "epoch": int(epoch), "found": bool(found),
            "retrain_start_epoch": int(start), "method": cfg.method, "retrain": cfg.retrain,
            "params": params.total, "flops": flops.total, "per_layer": flops.per_layer,
            "channels_kept": channels.kept, "channels_total": channels.total,
            "channels": channels.as_dicts(),
            "dense_params": dense_info["params"], "dense_flops": dense_info["flops"],
            "flops_ratio": round(flops.total / max(dense_info["flops"], 1), 6),
            "round_multiple": (width_choice.multiple if width_choice else cfg.round_multiple),
            "width_choice": width_choice.as_dict() if width_choice else None,
            "bn_calibration": calibration, "drawn_accuracy": accuracy}
    if scoring is not None:
        meta["scoring"] = scoring
    if cfg.verbose:
        print(f"ticket p={ratio:g} drawn at epoch {epoch} -> {folder}: params "
              f"{dense_info['params']:,} -> {params.total:,}, FLOPs {dense_info['flops']:,} -> "
              f"{flops.total:,}\n{channels.table()}\n{_describe(calibration, accuracy)}")
    with io_utils.atomic_dir(folder) as tmp:
        pruned.save(os.path.join(tmp, "model.keras"))
        np.savez(os.path.join(tmp, "mask.npz"), **masks)
        io_utils.atomic_write_json(os.path.join(tmp, "meta.json"), meta)
    return meta


def _recalibrate(cfg, model, splits, forward_flops):
    """(meta `bn_calibration`, meta `drawn_accuracy`) of a pruned ticket whose BN moving
    statistics are re-estimated in place (not for a `reinit` ticket)."""
    score, scored = _scorer(cfg, model, splits)
    before = score()
    if methods.get(cfg.method).retrain_mode(cfg) == "reinit":
        calibration = {"skipped": "retrain=reinit: the ticket is a fresh initialisation"}
        after, before, passes = before, None, 1
    else:
        calibration = bn_stats.recalibrate(model, splits.calibration_batches(
            CALIBRATION_BATCHES))
        calibration["flops"] = int(forward_flops) * calibration["samples"]
        after, passes = score(), 2
    return calibration, {"validation": after, "before_bn_calibration": before,
                         "samples": scored, "flops": int(forward_flops) * scored * passes}


def _scorer(cfg, model, splits):
    """(`() -> top-1` of `model`'s current weights on the validation batches the search
    scores, None without a validation split; the images one call scores). It scores a
    compiled copy, so that the saved ticket stays uncompiled."""
    data = trainer.eval_data(splits.validation(), cfg)
    if data is None:
        return (lambda: None), 0
    copy = keras_for(model).models.clone_model(model)
    trainer.compile_for_training(copy, cfg, splits)

    def score():
        copy.set_weights(model.get_weights())
        return round(float(copy.evaluate(data, verbose=0, return_dict=True)["accuracy"]), 6)

    scored = splits.num_validation
    if cfg.eval_batches:
        scored = min(scored, cfg.eval_batches * splits.batch_size)
    return score, scored


def _describe(calibration, accuracy) -> str:
    if "skipped" in calibration:
        head = f"BN statistics kept ({calibration['skipped']})"
    else:
        head = (f"BN statistics re-estimated on {calibration['samples']:,} training images "
                f"({calibration['batches']} batches, no augmentation)")
    if accuracy["validation"] is None:
        return head + "; no validation split to score the drawn ticket"
    if accuracy["before_bn_calibration"] is None:
        return f"{head}: validation accuracy before retraining {accuracy['validation']:.4f}"
    return (f"{head}: validation accuracy before retraining "
            f"{accuracy['before_bn_calibration']:.4f} -> {accuracy['validation']:.4f}")
