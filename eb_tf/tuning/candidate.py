"""One tuning candidate (p, threshold, l1, lr): draw its ticket, time it, retrain, score it.

- `draw`: from the shared search of its (l1, lr) (`eb_tf.tuning.search`): the dense
  model with the weights of the ticket epoch t, the ratio's mask of epoch t (rounded
  as `round_multiple` says: `eb_tf.pipeline.widths`), `prune`.
- `latency_ms`: the ticket exported with `export_tflite`, batch-1 median of
  `measure_latency` (noisy on a shared machine: one number per candidate).
- `retrain`: `epochs` epochs from t on the run's epoch-indexed schedule (the pipeline's
  inherit retrain, cut short), then top-1 on the VALIDATION split (never test).

Example:

    from eb_tf.tuning import candidate as tuning_candidate, search as tuning_search
    run = tuning_search.run_search(cfg, 1e-4, 0.1, (0.3, 0.5), (0.1,), splits, "/tmp/s")
    ticket, info = tuning_candidate.draw(run, 0.5, 0.1, splits)
    tuning_candidate.retrain(ticket, run.cfg, info["epoch"], 2, splits)["val_accuracy"]
"""
import os
from typing import Tuple

import numpy as np

from eb_tf import compat
from eb_tf.compat import keras
from eb_tf.export.litert import measure_latency
from eb_tf.export.tflite import export_tflite
from eb_tf.pipeline import costs, schedules, trainer, widths
from eb_tf.pruning import bn_kernel
from eb_tf.pruning.flops import count_flops, count_params
from eb_tf.pruning.pruner import prune
from eb_tf.quantization import precision
from eb_tf.sparsity.regularizers import add_bn_l1, add_weight_decay
from eb_tf.tuning import search as tuning_search

__all__ = ["draw", "retrain", "latency_ms", "mask_at"]


def mask_at(folder: str, ratio: float, epoch: int):
    """{BN key: bool array}: the mask of `ratio` at `epoch` recorded by a search."""
    history = trainer.read_mask_history(os.path.join(folder, "masks", f"p{ratio:g}.npz"))
    rows = np.flatnonzero(history["epochs"] == epoch)
    if not rows.size:
        raise ValueError(f"the search in {folder!r} has no mask of ratio {ratio:g} at epoch "
                         f"{epoch}; delete the folder to search again")
    flat = history["masks"][rows[-1]]
    bounds = np.cumsum([0, *history["sizes"]])
    return {k: flat[bounds[i]:bounds[i + 1]].copy() for i, k in enumerate(history["keys"])}


def draw(run: tuning_search.SearchRun, ratio: float, threshold: float,
         splits) -> Tuple[keras.Model, dict]:
    """Draws the (ratio, threshold) ticket of a shared search as a smaller model.

    Returns:
      (the pruned float model, {"epoch", "found", "flops", "params", "channels_kept",
       "channels_total"}); epoch = the first epoch whose mask distance is <= threshold,
      or the search's last epoch if none (found = False).

    Raises:
      ValueError: (ratio, threshold) is not a candidate the search tracked.
    """
    entry = run.record["tickets"].get(tuning_search.candidate_key(ratio, threshold))
    if entry is None:
        raise ValueError(f"ratio={ratio:g}, threshold={threshold:g} is not a candidate of the "
                         f"search in {run.folder!r} (known: {sorted(run.record['tickets'])})")
    t = int(entry["epoch"])
    dense = tuning_search.dense_model(run.cfg, splits).model
    dense.load_weights(tuning_search.weights_path(run.folder, t))
    float_model = precision.strip_precision(dense)
    masks = mask_at(run.folder, ratio, t)
    masks, choice = widths.for_run(run.cfg, float_model, masks)
    pruned = bn_kernel.unfuse(prune(float_model, masks), choice.unfused if choice else ())
    return pruned, {"epoch": t, "found": bool(entry["found"]),
                    "flops": int(count_flops(pruned).total),
                    "params": int(count_params(pruned).total),
                    "channels_kept": int(sum(int(m.sum()) for m in masks.values())),
                    "channels_total": int(sum(m.size for m in masks.values()))}


def retrain(pruned, cfg, start: int, epochs: int, splits) -> dict:
    """Retrains a drawn ticket for `epochs` from epoch `start`; validation top-1 and costs.

    As the pipeline's `inherit` retrain (coupled weight decay, L1 if `retrain_l1`,
    `retrain_precision`, fresh SGD, the schedule of T continued from `start`), but cut
    to `epochs` epochs.

    Returns:
      {"val_accuracy", "retrain_epochs", "retrain_seconds", "retrain_flops"}.
    """
    compat.check_tf_keras_model(pruned, "eb_tf.tuning.candidate.retrain")
    keras.utils.set_random_seed(cfg.seed)
    model = add_weight_decay(pruned, cfg.weight_decay) if cfg.weight_decay else pruned
    model = add_bn_l1(model, cfg.l1 if cfg.retrain_l1 else 0.0)
    prepared = precision.prepare_for_precision(model, cfg.retrain_precision, "retrain")
    model = trainer.compile_for_training(prepared.model, cfg, splits, prepared.wrap_optimizer)
    lr = schedules.keras_callback(cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.lr_decay,
                                  cfg.warmup_epochs)
    meter = costs.PhaseMeter()
    meter.start()
    model.fit(splits.train_epochs(start, start + epochs), steps_per_epoch=splits.steps_per_epoch,
              initial_epoch=start, epochs=start + epochs, callbacks=[lr], verbose=0)
    meter.stop()
    metrics = model.evaluate(trainer.eval_data(splits.validation(), cfg), verbose=0,
                             return_dict=True)
    samples = epochs * trainer.samples_per_epoch(splits)
    return {"val_accuracy": round(float(metrics["accuracy"]), 6), "retrain_epochs": epochs,
            "retrain_seconds": round(meter.seconds, 3),
            "retrain_flops": costs.training_flops(count_flops(pruned).total, samples)}


def latency_ms(pruned, path: str, mode: str, threads: int, runs: int, splits) -> float:
    """Median batch-1 latency (ms) of the ticket exported to TFLite at `path`."""
    compat.check_tf_keras_model(pruned, "eb_tf.tuning.candidate.latency_ms")
    rep = splits.representative(100) if mode == "int8" else None
    export_tflite(pruned, path, mode=mode, representative_data=rep)
    return measure_latency(path, num_threads=threads, num_runs=runs).median_ms
