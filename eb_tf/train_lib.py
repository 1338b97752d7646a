"""EB Train end to end: search the Early-Bird ticket, draw it, retrain it (and baselines).

`run(config, workdir)` is what `python -m binaries.eb_train` calls; the phase binaries
call `run(..., phases=("search",))` and so on on the same run folder. Methods:

- `eb`: dense training with L1 on BN gammas + `EarlyBird` until every ratio's ticket
  emerges at epoch t (or T: `found: false`), draw it (`round_masks`, `prune`), retrain:
  `inherit` (weights of t, fresh SGD, `fit(initial_epoch=t, epochs=T)` on the same
  epoch-indexed schedule: search + retrain = T epochs), `reinit` (fresh init, T epochs)
  or `rewind` (weights and schedule position of epoch k).
- `dense`: standard training for T epochs (no L1, no pruning).
- `ns`: network slimming: T epochs with L1, prune at T, retrain T epochs.
- `lt`: one-shot lottery ticket: T epochs with L1, prune at T, rewind to the weights
  of `rewind_epoch` (0 = initialisation), retrain T epochs.

Every phase resumes from its last completed epoch after a kill and is skipped when its
report entry says `done`. See `eb_tf.run_dir` for the folder layout and report.

Example:

    from eb_tf import config as eb_config, train_lib
    cfg = eb_config.default_config()
    cfg.dataset, cfg.model, cfg.epochs = "digits", "convnet", 20
    report = train_lib.run(cfg, "/tmp/eb_run")
    report["eb"]["0.5"]          # {"epoch": 7, "found": True, ...}
"""
import contextlib
import os
from typing import Iterable


from eb_tf import config as eb_config
from eb_tf import costs, drawing, io_utils, run_dir, trainer
from eb_tf import distributed_run, sync_bn as sync_bn_lib  # distribute (issue 10)
from eb_tf import precision as precision_lib
from eb_tf.compat import keras, tf

__all__ = ["PHASES", "run", "search", "draw", "retrain", "export", "load_splits",
           "build_dense_model"]

draw = drawing.draw

PHASES = ("search", "draw", "retrain", "export")


def _eb():
    import eb_tf  # the package's public API; imported late (eb_tf imports this module)
    return eb_tf


def load_splits(cfg: eb_config.RunConfig):
    """The `eb_tf.data.load` splits a config asks for."""
    return _eb().data.load(cfg.dataset, batch_size=cfg.batch_size, seed=cfg.seed,
                           validation_fraction=cfg.validation_fraction,
                           train_subset=cfg.train_subset or None, augment=cfg.augment,
                           data_dir=cfg.data_dir or None)


def build_dense_model(cfg: eb_config.RunConfig, splits):
    """The zoo model with coupled weight decay and (except `dense`) the L1 on gammas."""
    eb = _eb()
    keras.utils.set_random_seed(cfg.seed)
    model = eb.models.build(cfg.model, splits.num_classes, tuple(splits.input_shape),
                            width=cfg.width)
    if cfg.sync_bn:  # distribute (issue 10): BN statistics over the global batch
        model = sync_bn_lib.sync_batchnorm(model)
    if cfg.weight_decay:
        model = eb.add_weight_decay(model, cfg.weight_decay)
    if cfg.method != "dense" and cfg.l1:
        model = eb.add_bn_l1(model, cfg.l1)
    return model


@contextlib.contextmanager
def _determinism(cfg):
    """Seeds everything; op determinism on for the run (and off again afterwards)."""
    from tensorflow.python.framework import config as tf_config  # is/disable: not public
    was = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and not was:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if cfg.deterministic and not was:
            tf_config.disable_op_determinism()


def run(config, workdir: str, phases: Iterable[str] = PHASES, splits=None,
        print_summary: bool = True) -> dict:
    """Runs (or resumes) the phases of one run folder and returns its report.

    Args:
      config: an ml_collections ConfigDict (see `eb_tf.config.default_config`), a dict
        or a `RunConfig`; validated before anything is trained.
      workdir: the run folder; same config -> resume, another config -> ValueError.
      phases: a subset of ("search", "draw", "retrain", "export"), run in this order.
      splits: optional `eb_tf.data` Splits to use instead of loading `config.dataset`
        (your own data; the config hash does not see it).
      print_summary: print the summary table at the end.

    Returns:
      The report dict (also in `workdir/report.json`).

    Raises:
      ValueError: bad config field, unknown phase, a workdir holding another config,
        or a phase whose input is missing (e.g. `draw` before `search`).
    """
    from eb_tf import tuning  # ratios=auto (issue 9); late: tuning imports this module
    if tuning.is_auto(config):  # choose p (tuning in workdir/tune, resumable) first
        config = tuning.resolve_auto(config, os.path.join(workdir, "tune"), splits)
    cfg = eb_config.from_config_dict(config)
    phases = tuple(phases)
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"phases={phases!r}: each must be one of {PHASES}")
    _check_names(cfg)
    # distribute (issue 10): the strategy before any TF op; non-chief workers write to a
    # temporary copy of the folder; search/retrain build and train in strategy.scope().
    with distributed_run.pipeline(cfg, workdir) as dist:
        rd = run_dir.RunDir.open(dist.workdir, cfg)
        rd.update_report(distribute={p: dist.describe() for p in phases})
        with _determinism(cfg):
            if splits is None and any(p != "draw" for p in phases):
                splits = load_splits(cfg)
            for phase in PHASES:
                if phase in phases:
                    with dist.scope(phase):
                        {"search": search, "draw": draw, "retrain": retrain,
                         "export": export}[phase](dist.cfg, rd, dist.splits(splits))
        report = rd.update_report(total=run_dir.totals(rd.report()))
    if print_summary:
        print(run_dir.summary_table(report))
    return report


def _check_names(cfg):
    """Unknown model names fail before any data is loaded or trained."""
    models = _eb().models
    if ":" not in cfg.model and cfg.model not in models.names():
        raise ValueError(f"config.model={cfg.model!r} is not a known model; known: "
                         f"{', '.join(models.names())}, 'keras:<Application>' or "
                         "'package.module:function'")


def _ratio(r) -> str:
    return f"{r:g}"


# ---------------------------------------------------------------------------- search
def search(cfg, rd, splits):
    """Dense training (+L1, +EarlyBird) to the tickets, or T epochs for the baselines."""
    if rd.phase_done("search"):
        return
    eb = _eb()
    prepared = precision_lib.prepare_for_precision(build_dense_model(cfg, splits),
                                                   cfg.search_precision, "search")
    model = trainer.compile_for_training(prepared.model, cfg, splits, prepared.wrap_optimizer)
    init_path = rd.search_dir("weights_e0.h5")
    if not os.path.exists(init_path):
        io_utils.atomic_save_weights(model, init_path)
    callbacks, stateful, bird = [], {}, None
    if cfg.method != "dense":
        bird = eb.EarlyBird(ratios=cfg.ratios, threshold=cfg.threshold, window=cfg.window,
                            scope=cfg.scope, min_channels=cfg.min_channels,
                            stop_training=cfg.method == "eb" and not cfg.keep_training,
                            save_dir=rd.search_dir("eb"), save_epochs=cfg.draw_epochs,
                            verbose=1 if cfg.verbose else 0)
        callbacks += [bird, trainer.MaskRecorder(bird, rd.search_dir("masks"))]
        stateful["earlybird"] = bird
    rewind = cfg.rewind_epoch if (cfg.method == "lt" or cfg.retrain == "rewind") else 0
    if rewind:
        callbacks.append(trainer.SaveWeightsAt(rewind, rd.search_dir(f"weights_e{rewind}.h5")))
    done = (lambda: all(v is not None for v in bird.found_epochs.values())) \
        if bird is not None and bird.stop_training else None
    result = trainer.fit_resumable(model, cfg, splits, rd.search_dir("ckpt"), 0, callbacks,
                                   stateful, rd.tb_dir("search"), done)
    io_utils.atomic_save_model(model, rd.search_dir("final.keras"))
    io_utils.atomic_write_json(rd.search_dir("history.json"), result["history"])
    end = result["end_epoch"]
    record = costs.phase_record(end, result["meter"], eb.count_flops(model).total,
                                end * trainer.samples_per_epoch(splits), cfg.search_precision,
                                done=True, last_epoch=end, spec=prepared.spec)
    sections = {"phases": {"search": record}}
    if bird is not None:
        sections["eb"] = {_ratio(r): {"epoch": t if t is not None else end,
                                      "found": t is not None, "found_epoch": t,
                                      "threshold": cfg.threshold, "window": cfg.window,
                                      "distances": bird.distances[r]}
                          for r, t in bird.found_epochs.items()}
    else:
        acc = trainer.evaluate(model, splits, cfg)
        sections["final"] = {"dense": {**acc, "model": "search/final.keras",
                                       "params": eb.count_params(model).total,
                                       "flops": eb.count_flops(model).total}}
    rd.update_report(**sections)


# ---------------------------------------------------------------------------- retrain
def retrain(cfg, rd, splits):
    """Retrains each drawn ticket to epoch T; writes retrain/p{r}/final.keras."""
    if cfg.method == "dense" or rd.phase_done("retrain"):
        return
    eb = _eb()
    if not rd.phase_done("draw"):
        raise ValueError(f"retrain needs the drawn tickets in --workdir {rd.path!r}; run "
                         "eb_prune (or eb_train) first")
    per_ratio = dict(rd.report()["phases"].get("retrain", {}).get("by_ratio", {}))
    for ratio in cfg.ratios:
        key = _ratio(ratio)
        if per_ratio.get(key, {}).get("done"):
            continue
        meta = io_utils.read_json(os.path.join(rd.ticket_dir(ratio), "meta.json"))
        model = drawing.load_model(os.path.join(rd.ticket_dir(ratio), "model.keras"))
        if cfg.weight_decay:
            model = eb.add_weight_decay(model, cfg.weight_decay)
        model = eb.add_bn_l1(model, cfg.l1 if cfg.retrain_l1 else 0.0)
        prepared = precision_lib.prepare_for_precision(model, cfg.retrain_precision, "retrain")
        model = trainer.compile_for_training(prepared.model, cfg, splits,
                                             prepared.wrap_optimizer)
        start = int(meta["retrain_start_epoch"])
        result = trainer.fit_resumable(model, cfg, splits, rd.retrain_dir(ratio, "ckpt"), start,
                                       tb_dir=rd.tb_dir(f"retrain_{run_dir.ratio_key(ratio)}"))
        final = rd.retrain_dir(ratio, "final.keras")
        io_utils.atomic_save_model(model, final)
        epochs = result["epochs_run"]
        per_ratio[key] = costs.phase_record(
            epochs, result["meter"], eb.count_flops(model).total,
            epochs * trainer.samples_per_epoch(splits), cfg.retrain_precision, done=True,
            start_epoch=start, spec=prepared.spec)
        acc = trainer.evaluate(model, splits, cfg)
        rd.update_report(phases={"retrain": {"by_ratio": per_ratio}}, final={key: {
            **acc, "model": os.path.relpath(final, rd.path), "params": meta["params"],
            "flops": meta["flops"]}})
    total = {name: sum(r[name] for r in per_ratio.values())
             for name in ("epochs", "seconds", "flops", "samples")}
    energies = [r["energy"] for r in per_ratio.values()]
    total["energy"] = ({"available": True, "joules": sum(e["joules"] for e in energies),
                        "source": energies[0]["source"]}
                       if energies and all(e["available"] for e in energies) else
                       {"available": False, "joules": None,
                        "reason": next((e["reason"] for e in energies
                                        if not e["available"]), "no retrain")})
    rd.update_report(phases={"retrain": {"by_ratio": per_ratio, "done": True,
                                         "precision": cfg.retrain_precision, **total}})


# ---------------------------------------------------------------------------- export
def export(cfg, rd, splits):
    """TFLite export of every final model (config.export) via `eb_tf.run_export`.

    The files land in export/<name>/model_<mode>.tflite; report.json gains
    `export[mode]` (size, latency, Keras vs TFLite accuracy) and `phases.export`.
    """
    if cfg.export == "none" or rd.phase_done("export"):
        return
    from eb_tf import run_export  # the export issue's module; imports the public API
    if not rd.report().get("final"):
        raise ValueError(f"export needs the final models in --workdir {rd.path!r}; run the "
                         "search/retrain first")
    meter = costs.PhaseMeter()
    meter.start()
    section = run_export.export_run(rd.path, mode=cfg.export, splits=splits)
    meter.stop()
    rd.update_report(phases={"export": {
        "done": True, "mode": cfg.export, "epochs": 0, "flops": 0, "precision": cfg.export,
        "seconds": round(meter.seconds, 3), "energy": meter.energy(),
        "models": sorted(section.get("models", {}))}})
