"""The search phase: dense training (L1 on gammas, EarlyBird) to the tickets, or to T.

What the search does is read from the run's method record (`eb_tf.pipeline.methods`):
`search_l1` puts the L1 on the gammas; a pruning method that draws by |gamma| (no
`select` of its own) tracks the masks with `EarlyBird` (recorded every epoch in
`search/masks/`); `stops_at_ticket` ends the search once every ratio's ticket emerged
(unless `config.keep_training`); a rewind retrain saves the weights of
`config.rewind_epoch`; a method that `draws_at_init` (SNIP) trains nothing, its search
saving the initial model to draw from. A method that does not prune is evaluated at
the end (`final.dense`). `search/final.keras` is saved in float32 after a bf16/fp16
search (its weights; the TFLite export and the draw read it). The phase resumes from its
last completed epoch.

`adopt(cfg, rd, source)` copies the finished search of another run folder instead,
when the run's record says that its search trains as that method's (`search_as`: the
benchmark's `thinet` takes the `dense` run's): the same files and phase record, so the
run's cost still counts the T dense epochs, once measured.

Example:

    from eb_tf.pipeline import search
    search.search(cfg, rd, splits)       # rd: an eb_tf.pipeline.run_dir.RunDir
    rd.report()["eb"]["0.5"]["epoch"]
"""
import os

from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import costs, methods, run_dir, trainer
from eb_tf.pipeline.build import build_dense_model
from eb_tf.pruning.flops import count_flops, count_params
from eb_tf.quantization import precision as precision_lib
from eb_tf.sparsity.early_bird import EarlyBird

__all__ = ["search", "adopt", "ADOPTED_FILES"]

# What a search leaves that the later phases read (besides the checkpoint).
ADOPTED_FILES = ("final.keras", "history.json", "weights_e0.h5", "weights_e0.weights.h5")


def search(cfg, rd, splits):
    """Dense training (+L1, +EarlyBird) to the tickets, or T epochs for the baselines."""
    if rd.phase_done("search"):
        return
    method = methods.get(cfg.method)
    prepared = precision_lib.prepare_for_precision(build_dense_model(cfg, splits),
                                                   cfg.search_precision, "search")
    model = trainer.compile_for_training(prepared.model, cfg, splits, prepared.wrap_optimizer)
    init_path = rd.search_dir(run_dir.weights_name("weights_e0", cfg.keras_version))
    if not os.path.exists(init_path):
        io_utils.atomic_save_weights(model, init_path)
    callbacks, stateful, bird = [], {}, None
    if method.prunes and method.select is None and not method.draws_at_init:
        bird = EarlyBird(ratios=cfg.ratios, threshold=cfg.threshold, window=cfg.window,
                         scope=cfg.scope, min_channels=cfg.min_channels,
                         stop_training=method.stops_at_ticket and not cfg.keep_training,
                         save_dir=rd.search_dir("eb"), save_epochs=cfg.draw_epochs,
                         verbose=1 if cfg.verbose else 0)
        callbacks += [bird, trainer.MaskRecorder(bird, rd.search_dir("masks"))]
        stateful["earlybird"] = bird
    rewind = cfg.rewind_epoch if method.retrain_mode(cfg) == "rewind" else 0
    if rewind:
        callbacks.append(trainer.SaveWeightsAt(rewind, rd.search_dir(
            run_dir.weights_name(f"weights_e{rewind}", cfg.keras_version))))
    done = (lambda: all(v is not None for v in bird.found_epochs.values())) \
        if bird is not None and bird.stop_training else None
    result = {"end_epoch": 0, "meter": costs.PhaseMeter(), "history": [], "timing": None} \
        if method.draws_at_init else trainer.fit_resumable(
            model, cfg, splits, rd.search_dir("ckpt"), 0, callbacks, stateful,
            rd.tb_dir("search"), done)
    mixed = cfg.search_precision in precision_lib.POLICIES   # bf16/fp16: save float32
    io_utils.atomic_save_model(precision_lib.strip_precision(model) if mixed else model,
                               rd.search_dir("final.keras"))
    io_utils.atomic_write_json(rd.search_dir("history.json"), result["history"])
    end = result["end_epoch"]
    record = costs.phase_record(end, result["meter"], count_flops(model).total,
                                end * trainer.samples_per_epoch(splits), cfg.search_precision,
                                done=True, last_epoch=end, spec=prepared.spec,
                                timing=result["timing"])
    sections = {"phases": {"search": record}}
    if method.prunes:
        found = bird.found_epochs if bird is not None else dict.fromkeys(cfg.ratios)
        sections["eb"] = {run_dir.ratio_name(r): {
            "epoch": t if t is not None else end, "found": t is not None, "found_epoch": t,
            "threshold": cfg.threshold, "window": cfg.window,
            "distances": bird.distances[r] if bird is not None else []}
            for r, t in found.items()}
    else:
        acc = trainer.evaluate(model, splits, cfg)
        sections["final"] = {"dense": {**acc, "model": "search/final.keras",
                                       "params": count_params(model).total,
                                       "flops": count_flops(model).total}}
    rd.update_report(**sections)


def adopt(cfg, rd, source: str) -> None:
    """Copies the finished search of run folder `source` into `rd` (see the module doc).

    Raises:
      ValueError: `source` has no finished search, or trained another config than `cfg`
        (any field but `method` and the unhashed ones).
    """
    if rd.phase_done("search"):
        return
    report_path = os.path.join(source, "report.json")
    search = io_utils.read_json(report_path)["phases"].get("search", {}) \
        if os.path.exists(report_path) else {}
    if not search.get("done"):
        raise ValueError(f"{source!r} holds no finished search to adopt; run it first")
    theirs = io_utils.read_json(os.path.join(source, "config.json"))["config"]
    ours = cfg.to_dict()
    differ = sorted(k for k in set(theirs) | set(ours) if k != "method" and k not in
                    eb_config.UNHASHED_FIELDS and theirs.get(k) != ours.get(k))
    if differ:
        raise ValueError(f"{source!r} trained another config (config.{differ[0]}: "
                         f"{theirs.get(differ[0])!r} vs {ours.get(differ[0])!r}); its search "
                         "cannot stand for this run's")
    for name in ADOPTED_FILES:
        if os.path.exists(os.path.join(source, "search", name)):
            with open(os.path.join(source, "search", name), "rb") as f:
                io_utils.atomic_write_bytes(rd.search_dir(name), f.read())
    end = search["last_epoch"]
    rd.update_report(
        phases={"search": {**search, "adopted_from": os.path.relpath(source, rd.path)}},
        eb={run_dir.ratio_name(r): {"epoch": end, "found": False, "found_epoch": None,
                                    "threshold": cfg.threshold, "window": cfg.window,
                                    "distances": []} for r in cfg.ratios})
