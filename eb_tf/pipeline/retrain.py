"""The retrain phase: train each drawn ticket to epoch T (inherit, reinit, rewind, trained).

Each ticket of `tickets/p{r}/` is loaded, gets coupled weight decay and (with
`config.retrain_l1`, for a method whose search has it) the L1 on its gammas, is set up for `config.retrain_precision`
and trained from the start epoch its draw recorded (`meta.json`) to T, resumably;
`retrain/p{r}/final.keras` and the `final` report entry (test accuracy, params, FLOPs)
follow. A method that does not prune skips the phase.

Example:

    from eb_tf.pipeline import retrain
    retrain.retrain(cfg, rd, splits)      # after eb_tf.pipeline.draw.draw(cfg, rd)
    rd.report()["final"]["0.5"]["test"]
"""
import os

from eb_tf import io_utils
from eb_tf.pipeline import costs, methods, run_dir, trainer
from eb_tf.pipeline.draw import load_model
from eb_tf.pruning.flops import count_flops
from eb_tf.quantization import precision as precision_lib
from eb_tf.sparsity.regularizers import add_bn_l1, add_weight_decay

__all__ = ["retrain"]


def retrain(cfg, rd, splits):
    """Retrains each drawn ticket to epoch T; writes retrain/p{r}/final.keras."""
    if not methods.get(cfg.method).prunes or rd.phase_done("retrain"):
        return
    if not rd.phase_done("draw"):
        raise ValueError(f"retrain needs the drawn tickets in --workdir {rd.path!r}; run "
                         "eb_prune (or eb_train) first")
    per_ratio = dict(rd.report()["phases"].get("retrain", {}).get("by_ratio", {}))
    for ratio in cfg.ratios:
        key = run_dir.ratio_name(ratio)
        if per_ratio.get(key, {}).get("done"):
            continue
        per_ratio[key], final = _retrain_one(cfg, rd, splits, ratio)
        rd.update_report(phases={"retrain": {"by_ratio": per_ratio}}, final={key: final})
    rd.update_report(phases={"retrain": {"by_ratio": per_ratio, "done": True,
                                         "precision": cfg.retrain_precision,
                                         **_totals(per_ratio)}})


def _retrain_one(cfg, rd, splits, ratio):
    """(phase record, `final` report entry) of one ratio's ticket, trained to T."""
    meta = io_utils.read_json(os.path.join(rd.ticket_dir(ratio), "meta.json"))
    model = load_model(os.path.join(rd.ticket_dir(ratio), "model.keras"))
    if cfg.weight_decay:
        model = add_weight_decay(model, cfg.weight_decay)
    # A method that searches without L1 (snip, thinet) retrains without it too.
    model = add_bn_l1(model, cfg.l1 if cfg.retrain_l1 and methods.get(cfg.method).search_l1
                      else 0.0)
    prepared = precision_lib.prepare_for_precision(model, cfg.retrain_precision, "retrain")
    model = trainer.compile_for_training(prepared.model, cfg, splits, prepared.wrap_optimizer)
    start = int(meta["retrain_start_epoch"])
    result = trainer.fit_resumable(model, cfg, splits, rd.retrain_dir(ratio, "ckpt"), start,
                                   tb_dir=rd.tb_dir(f"retrain_{run_dir.ratio_key(ratio)}"))
    final = rd.retrain_dir(ratio, "final.keras")
    mixed = cfg.retrain_precision in precision_lib.POLICIES   # bf16/fp16: save float32
    io_utils.atomic_save_model(precision_lib.strip_precision(model) if mixed else model, final)
    epochs = result["epochs_run"]
    record = costs.phase_record(
        epochs, result["meter"], count_flops(model).total,
        epochs * trainer.samples_per_epoch(splits), cfg.retrain_precision, done=True,
        start_epoch=start, spec=prepared.spec, timing=result["timing"])
    acc = trainer.evaluate(model, splits, cfg)
    return record, {**acc, "model": os.path.relpath(final, rd.path), "params": meta["params"],
                    "flops": meta["flops"]}


def _totals(per_ratio: dict) -> dict:
    total = {name: sum(r[name] for r in per_ratio.values())
             for name in ("epochs", "seconds", "flops", "samples")}
    energies = [r["energy"] for r in per_ratio.values()]
    total["energy"] = ({"available": True, "joules": sum(e["joules"] for e in energies),
                        "source": energies[0]["source"]}
                       if energies and all(e["available"] for e in energies) else
                       {"available": False, "joules": None,
                        "reason": next((e["reason"] for e in energies
                                        if not e["available"]), "no retrain")})
    return total
