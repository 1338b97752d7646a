"""Shared Early-Bird searches for tuning: one dense run per (L1 strength, lr), every p at once.

The pruning ratio p and the EB threshold do not change the search trajectory (the
dense training with L1 on the BN gammas); only the L1 strength and the learning rate
do. So a tuning run trains one search per (strength, lr) with an `EarlyBird` tracking
every candidate ratio at the smallest candidate threshold (the latest ticket epoch of
all thresholds), records every epoch's masks (`trainer.MaskRecorder`) and keeps the
weights of each epoch at which some (ratio, threshold) ticket first emerges. Any
(p, threshold) candidate is then drawn from that folder without training again
(`eb_tf.tuning.candidate`).

A search folder (`searches/s{strength}_lr{lr}_{hash}/`) resumes after a kill like a
pipeline search (`trainer.fit_resumable`) and is reused once `search.json` exists:

    ckpt/            per-epoch checkpoint while it runs
    masks/p{r}.npz   every epoch's mask of ratio r
    weights/e{t}.h5  dense weights of epoch t (ticket epochs, and the last epoch)
    search.json      end epoch, distances, {"{r}@{thr}": {"epoch", "found"}}, costs

Example:

    from eb_tf.tuning import search as tuning_search
    run = tuning_search.run_search(cfg, 1e-4, 0.1, (0.3, 0.5), (0.1,), splits, "/tmp/s")
    run.record["tickets"]["0.5@0.1"]          # {"epoch": 4, "found": True}
"""
import dataclasses
import hashlib
import json
import os
from typing import Optional, Sequence

from eb_tf import io_utils
from eb_tf.compat import keras
from eb_tf.pipeline import build
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import costs, trainer
from eb_tf.pruning.flops import count_flops
from eb_tf.quantization import precision as precision_lib
from eb_tf.sparsity.early_bird import EarlyBird

__all__ = ["SearchRun", "search_config", "search_folder", "run_search", "first_crossing",
           "candidate_key", "weights_path", "dense_model", "SEARCH_FILE"]

SEARCH_FILE = "search.json"


def candidate_key(ratio: float, threshold: float) -> str:
    """'0.5@0.1': the key of a (ratio, threshold) ticket in search.json."""
    return f"{ratio:g}@{threshold:g}"


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """A finished shared search: its folder, config and record (`search.json`).

    Attributes:
      folder: the search folder.
      cfg: the `RunConfig` it trained with (l1, lr, all candidate ratios).
      record: the search.json contents.
      trained: True if this call trained (part of) it, False if it was cached.
    """
    folder: str
    cfg: eb_config.RunConfig
    record: dict
    trained: bool


def search_config(cfg: eb_config.RunConfig, strength: float, lr: float,
                  ratios: Sequence[float], thresholds: Sequence[float]) -> eb_config.RunConfig:
    """The run config of the shared search: EB with every ratio at the smallest threshold."""
    return dataclasses.replace(cfg, method="eb", l1=float(strength), lr=float(lr),
                               ratios=tuple(sorted(float(r) for r in ratios)),
                               threshold=float(min(thresholds)), keep_training=False,
                               draw_epochs=(), max_flops=0.0, max_latency_ms=0.0)


def search_folder(root: str, search_cfg: eb_config.RunConfig,
                  thresholds: Sequence[float]) -> str:
    """`root/s{l1}_lr{lr}_{hash}`: the hash covers every training field and the thresholds."""
    key = json.dumps([eb_config.config_hash(search_cfg), sorted(float(t) for t in thresholds)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return os.path.join(root, f"s{search_cfg.l1:g}_lr{search_cfg.lr:g}_{digest}")


def first_crossing(epochs: Sequence[int], distances: Sequence[Optional[float]],
                   threshold: float) -> Optional[int]:
    """The first epoch whose distance is <= threshold (None: not yet)."""
    for t, d in zip(epochs, distances):
        if d is not None and d == d and d <= threshold:
            return int(t)
    return None


class _CrossingWeights(keras.callbacks.Callback):
    """Saves the weights at each epoch where a (ratio, threshold) ticket first emerges.

    Stateless: the crossings are recomputed from the EarlyBird's distances (restored
    with it on resume). Put it after the EarlyBird callback.
    """

    def __init__(self, bird, thresholds: Sequence[float], folder: str):
        super().__init__()
        self.bird, self.thresholds, self.folder = bird, tuple(thresholds), folder

    def on_epoch_end(self, epoch, logs=None):
        t = self.bird.epochs[-1]
        if any(first_crossing(self.bird.epochs, self.bird.distances[r], thr) == t
               for r in self.bird.ratios for thr in self.thresholds):
            io_utils.atomic_save_weights(self.model, weights_path(self.folder, t))


def weights_path(folder: str, epoch: int) -> str:
    return os.path.join(folder, "weights", f"e{int(epoch)}.h5")


def dense_model(search_cfg, splits):
    """The search's (precision-prepared) dense model, as `runner.search` builds it."""
    return precision_lib.prepare_for_precision(build.build_dense_model(search_cfg, splits),
                                               search_cfg.search_precision, "search")


def run_search(cfg: eb_config.RunConfig, strength: float, lr: float,
               ratios: Sequence[float], thresholds: Sequence[float], splits,
               root: str) -> SearchRun:
    """Trains (or resumes, or reuses) the shared search of one (strength, lr).

    Args:
      cfg: the base run config (model, data, T = `epochs`, schedule, precision).
      strength: the L1 strength on the BN gammas (`l1`).
      lr: the initial learning rate.
      ratios: every candidate pruning ratio (tracked at once).
      thresholds: every candidate EB threshold (the search stops when each ratio's
        ticket emerged at the smallest one, or at T).
      splits: the `eb_tf.data` Splits.
      root: the folder holding the searches (one sub-folder per search).

    Returns:
      A `SearchRun`.
    """
    search_cfg = search_config(cfg, strength, lr, ratios, thresholds)
    folder = search_folder(root, search_cfg, thresholds)
    record_path = os.path.join(folder, SEARCH_FILE)
    if os.path.exists(record_path):
        return SearchRun(folder, search_cfg, io_utils.read_json(record_path), trained=False)
    prepared = dense_model(search_cfg, splits)
    model = trainer.compile_for_training(prepared.model, search_cfg, splits,
                                         prepared.wrap_optimizer)
    bird = EarlyBird(ratios=search_cfg.ratios, threshold=search_cfg.threshold,
                        window=search_cfg.window, scope=search_cfg.scope,
                        min_channels=search_cfg.min_channels, stop_training=True)
    callbacks = [bird, trainer.MaskRecorder(bird, os.path.join(folder, "masks")),
                 _CrossingWeights(bird, thresholds, folder)]
    result = trainer.fit_resumable(
        model, search_cfg, splits, os.path.join(folder, "ckpt"), 0, callbacks,
        {"earlybird": bird}, None,
        lambda: all(v is not None for v in bird.found_epochs.values()))
    end = int(result["end_epoch"])
    io_utils.atomic_save_weights(model, weights_path(folder, end))
    tickets = {}
    for r in search_cfg.ratios:
        for thr in sorted(set(float(t) for t in thresholds)):
            t = first_crossing(bird.epochs, bird.distances[r], thr)
            tickets[candidate_key(r, thr)] = {"epoch": end if t is None else t,
                                              "found": t is not None}
    record = {"config": search_cfg.to_dict(), "thresholds": sorted(set(thresholds)),
              "end_epoch": end, "epochs": list(bird.epochs),
              "distances": {f"{r:g}": bird.distances[r] for r in search_cfg.ratios},
              "tickets": tickets,
              "cost": costs.phase_record(end, result["meter"], count_flops(model).total,
                                         end * trainer.samples_per_epoch(splits),
                                         search_cfg.search_precision)}
    io_utils.atomic_write_json(record_path, record)
    return SearchRun(folder, search_cfg, record, trained=True)
