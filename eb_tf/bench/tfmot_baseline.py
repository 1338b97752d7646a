"""The tfmot baseline of the benchmark: unstructured magnitude pruning to the EB ticket's size.

What a Keras user reaches for today: `tfmot.sparsity.keras.prune_low_magnitude` on the
dense model (the same zoo model, init, weight decay and data as the `dense` run),
trained with `UpdatePruningStep` for the whole budget T on the run's schedule, then
`strip_pruning`. The sparsity s is set so the stripped model keeps as many nonzero
parameters as the EB ticket has parameters: s = (dense params - ticket params) /
prunable kernel params (tfmot prunes the Conv/Dense kernels of every layer to the same
fraction; biases and BN stay). `polynomial` ramps s from 0 at step 0 to its final
value at `end_fraction` of T (tfmot's `PolynomialDecay`, a mask update every epoch);
`constant` prunes to s at step 0 (`ConstantSparsity`). Unstructured zeros do not
shrink dense kernels: the training FLOPs recorded are the dense model's.

It is the benchmark's method `tfmot` (registered in `eb_tf.pipeline.methods` when this
module loads; it needs the `eb` method's tickets, so it runs after it).

The folder is a run folder (`eb_tf.pipeline.run_dir`, the dense run's config) whose report has
`method: "tfmot"`, a `train` phase, `final.tfmot` and the usual `export` section, so
`eb_tf.export_run` and the benchmark read it like the others; it resumes per epoch.

Example:

    from eb_tf.bench import tfmot_baseline
    report = tfmot_baseline.run_tfmot(dense_cfg, "/tmp/bench/tfmot/p0.5", splits,
                                   target_params=236073)
    report["final"]["tfmot"]["nonzero_params"]
"""
import os

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import keras
from eb_tf.pipeline import build, costs, export_phase, methods, run_dir, run_lock, trainer
from eb_tf.pruning.flops import count_flops, count_params

__all__ = ["SCHEDULES", "target_sparsity", "run_tfmot", "run_in_bench", "nonzero_params"]

SCHEDULES = ("polynomial", "constant")


def _sparsity_api():
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    return tfmot.sparsity.keras


def _prunable_params(model) -> int:
    """Kernel entries tfmot would prune in `model` (wraps a throw-away copy)."""
    sparse = _sparsity_api()
    copy = keras.models.clone_model(model)  # tfmot's wrappers share the layers they wrap
    wrapped = sparse.prune_low_magnitude(copy, pruning_schedule=sparse.ConstantSparsity(0.5, 0))
    return int(sum(int(np.prod(w.shape)) for layer in wrapped.layers
                   for w, _, _ in getattr(layer, "pruning_vars", ())))


def target_sparsity(model, target_params: int) -> float:
    """The tfmot sparsity leaving `target_params` nonzero parameters in `model`.

    Raises:
      ValueError: the target is not below the dense count, or below what the
        non-prunable weights (biases, BN) alone hold.

    Example:
      >>> target_sparsity(dense, eb_ticket_params)        # e.g. 0.76 for p = 0.5
    """
    dense = count_params(model).total
    prunable = _prunable_params(model)
    sparsity = (dense - int(target_params)) / max(prunable, 1)
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"target_params={target_params} cannot be reached by pruning the "
                         f"{prunable:,} prunable kernel weights of model {model.name!r} "
                         f"({dense:,} parameters); it must lie in "
                         f"({dense - prunable:,}, {dense:,})")
    return float(sparsity)


def nonzero_params(model) -> int:
    """Nonzero entries over all of the model's weights (its stripped, dense layout)."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def _schedule(kind, sparsity, cfg, steps_per_epoch, end_fraction):
    sparse = _sparsity_api()
    if kind == "constant":
        return sparse.ConstantSparsity(sparsity, begin_step=0, frequency=steps_per_epoch)
    end_epoch = min(cfg.epochs, max(1, int(round(end_fraction * cfg.epochs))))
    return sparse.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                  end_step=end_epoch * steps_per_epoch,
                                  frequency=steps_per_epoch)


def run_tfmot(cfg, workdir: str, splits, target_params: int, schedule: str = "polynomial",
              end_fraction: float = 0.5) -> dict:
    """Trains (or resumes) the tfmot baseline in `workdir` and exports it; returns the report.

    Args:
      cfg: the dense run's `RunConfig` (method `dense`: no L1 on gammas).
      workdir: the run folder of this baseline.
      splits: the `eb_tf.data` Splits shared with the other methods.
      target_params: nonzero parameters to keep (the EB ticket's parameter count).
      schedule: `polynomial` or `constant` (see the module docstring).
      end_fraction: `polynomial` reaches the final sparsity at this fraction of T.

    Raises:
      ValueError: a config that is not `method="dense"` or not tf_keras
        (`keras_version=2`), an unknown schedule, an
        end_fraction outside (0, 1] or an unreachable target (`target_sparsity`).
    """
    if cfg.method != "dense":
        raise ValueError(f"cfg.method={cfg.method!r}: the tfmot baseline trains the dense "
                         "run's config; pass it with method='dense'")
    if cfg.keras_version != 2:
        raise ValueError(f"config.keras_version={cfg.keras_version!r} is invalid for the tfmot "
                         "baseline: tfmot prunes tf_keras models only; drop `tfmot` from "
                         "config.methods or use config.keras_version=2")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} must be one of {SCHEDULES}")
    if not 0.0 < end_fraction <= 1.0:
        raise ValueError(f"end_fraction={end_fraction!r} must be in (0, 1]")
    with run_lock.hold(workdir):  # one process per run folder, as in the pipeline
        rd = run_dir.RunDir.open(workdir, cfg)
        if not rd.phase_done("train"):
            with build.determinism(cfg):  # the seeds and op determinism of the pipeline
                _train(cfg, rd, splits, int(target_params), schedule, end_fraction)
        if cfg.export != "none":
            export_phase.export(cfg, rd, splits)
        return rd.update_report(total=run_dir.totals(rd.report()))


def _train(cfg, rd, splits, target_params, schedule, end_fraction):
    sparse = _sparsity_api()
    dense = build.build_dense_model(cfg, splits)
    sparsity = target_sparsity(dense, target_params)
    steps = splits.steps_per_epoch
    wrapped = sparse.prune_low_magnitude(
        dense, pruning_schedule=_schedule(schedule, sparsity, cfg, steps, end_fraction))
    model = trainer.compile_for_training(wrapped, cfg, splits)
    result = trainer.fit_resumable(model, cfg, splits, rd.file("train", "ckpt"), 0,
                                   callbacks=[sparse.UpdatePruningStep()],
                                   tb_dir=rd.tb_dir("train"))
    final = sparse.strip_pruning(model)
    path = rd.file("train", "final.keras")
    io_utils.atomic_save_model(final, path)
    io_utils.atomic_write_json(rd.file("train", "history.json"), result["history"])
    flops = count_flops(final).total
    end = result["end_epoch"]
    record = costs.phase_record(end, result["meter"], flops,
                                end * trainer.samples_per_epoch(splits), "fp32", done=True,
                                last_epoch=end, sparsity=round(sparsity, 6), schedule=schedule,
                                timing=result["timing"])
    acc = trainer.evaluate(final, splits, cfg)
    rd.update_report(method="tfmot", phases={"train": record}, tfmot={
        "sparsity": sparsity, "schedule": schedule, "end_fraction": end_fraction,
        "target_params": target_params}, final={"tfmot": {
            **acc, "model": os.path.relpath(path, rd.path),
            "params": count_params(final).total, "flops": flops,
            "nonzero_params": nonzero_params(final), "sparsity": sparsity}})


def run_in_bench(cfg, workdir: str, splits, context) -> dict:
    """The `tfmot` method's benchmark runner: one baseline per ratio, sized like eb's ticket.

    Args:
      cfg: the run config of the method (`config_method="dense"`).
      workdir: the benchmark's folder for this method (`p{r}/` inside).
      splits: the shared `eb_tf.data` Splits.
      context: the benchmark's `reports` (by method) and `options` (tfmot_schedule,
        tfmot_end_fraction).

    Returns:
      {ratio: (report, folder relative to the benchmark folder)}.
    """
    out = {}
    for ratio in cfg.ratios:
        target = context.reports["eb"]["ticket"][run_dir.ratio_name(ratio)]["params"]
        folder = os.path.join(os.path.basename(workdir), run_dir.ratio_key(ratio))
        out[ratio] = (run_tfmot(cfg, os.path.join(workdir, run_dir.ratio_key(ratio)), splits,
                                target, context.options.tfmot_schedule,
                                context.options.tfmot_end_fraction), folder)
    return out


methods.register(methods.Method(
    "tfmot", "unstructured magnitude pruning for T epochs: tfmot prunes to the eb ticket's "
    "parameter count; its FLOPs are the dense FLOPs, as unstructured zeros do not reduce "
    "dense-kernel compute (params column: nonzero weights)", search_l1=False,
    formula="1 (unstructured zeros do not shrink dense kernels)", cost=lambda *_: 1.0,
    marker="D",
    run=run_in_bench, config_method="dense", requires=("eb",), phases=("train",)))
