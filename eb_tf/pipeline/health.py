"""Health checks of a run: a diverged phase is an error, a useless result is a warning.

- `DivergenceCheck`, the Keras callback `trainer.fit_resumable` puts first in every
  phase (after the clock, which only reads the time): a non-finite training or validation loss or weight at an epoch end stops the
  phase with `TrainingDiverged` (a ValueError) naming the phase, the epoch and the
  likely cause. It checks the loss Keras reports (the epoch's mean of the batch losses,
  non-finite if any batch was), not the gradients: a step that fp16 loss scaling skips
  (LossScaleOptimizer: its scaled gradients overflowed, so the weights are left as they
  were and the scale is halved) has a finite loss and does not count. It has no batch
  hook, so it adds nothing to the train step (Keras then skips its per-batch callback
  work). The check runs before the checkpoint, so a phase that fails keeps its last
  good epoch and is not marked done.
- `report_warnings`: one sentence per useless result of a finished run (test accuracy
  at chance level, far below the search's validation accuracy, no Early-Bird ticket
  before T, a retrain of 0 epochs). `record` stores them as report.json `"warnings"`
  (replaced on every run) and issues each as a `HealthWarning`; `summary_table` shows
  them; under `config.strict=True`, `raise_if_strict` turns them into `RunWarnings`.

Example:

    from eb_tf.pipeline import health
    health.chance_level(10, 360)          # 0.1474...: 1/10 + 3 sqrt(0.1 * 0.9 / 360)
    health.report_warnings(report, cfg, num_classes=10, test_images=360,
                           search_history=history)   # ["ticket p=0.5: ...", ...]
"""
import math
import os
import warnings
from typing import List, Optional, Sequence

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import keras, tf
from eb_tf.pipeline import methods

__all__ = ["DivergenceCheck", "TrainingDiverged", "RunWarnings", "HealthWarning",
           "phase_of", "chance_level", "scored_test_images", "report_warnings", "record",
           "raise_if_strict", "MAX_DROP"]

MAX_DROP = 0.20   # a final accuracy this far below the search's best validation: a warning


class TrainingDiverged(ValueError):
    """A phase's loss or weights became NaN/Inf (the binaries' one-line error)."""


class RunWarnings(ValueError):
    """`config.strict=True` and the run ended with warnings (`.warnings`: the sentences)."""

    def __init__(self, message: str, found: Sequence[str] = ()):
        super().__init__(message)
        self.warnings = list(found)


class HealthWarning(UserWarning):
    """A finished run whose result looks useless (see `report_warnings`)."""


def phase_of(ckpt_dir: str) -> str:
    """The phase a checkpoint folder belongs to: 'search', 'retrain p0.5', 'train'..."""
    parts = os.path.normpath(ckpt_dir).split(os.sep)
    parts = parts[:-1] if parts[-1] == "ckpt" and len(parts) > 1 else parts
    return " ".join(parts[-2:]) if len(parts) > 1 and parts[-2] == "retrain" else parts[-1]


class DivergenceCheck(keras.callbacks.Callback):
    """Raises `TrainingDiverged` on a non-finite loss or weight at an epoch end.

    Args:
      phase: named in the error, e.g. 'search' or 'retrain p0.5'.
      cfg: the `RunConfig`, for the hint (`lr`, `warmup_epochs`); None: a generic hint.
    """

    def __init__(self, phase: str, cfg=None):
        super().__init__()
        self.phase, self.cfg = phase, cfg
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = int(epoch)
        for name in ("loss", "val_loss"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                self._fail(f"the {'validation' if name == 'val_loss' else 'training'} loss "
                           f"is {float(value)} at the end of the epoch")
        bad = [w.name for w in getattr(self.model, "weights", [])
               if tf.as_dtype(w.dtype).is_floating and not bool(tf.reduce_all(tf.math.is_finite(w)))]
        if bad:
            self._fail(f"weights {bad[:3]}{' ...' if len(bad) > 3 else ''} hold NaN/Inf "
                       "at the end of the epoch")

    def _fail(self, what: str):
        lr = None if self.cfg is None else self.cfg.lr
        now = _current_lr(self.model)
        cause = "the learning rate is too high: lower it" if lr is None else (
            f"the learning rate config.lr={lr:g}"
            f"{'' if now is None else f' (lr {now:.3g} in this epoch)'} is too high: try "
            f"config.lr={lr / 10:g} or config.warmup_epochs > 0")
        half = sorted({layer.compute_dtype for layer in getattr(self.model, "layers", [])
                       if layer.compute_dtype in ("float16", "bfloat16")})
        if half:  # loss-scaled steps were not counted: the forward pass itself overflowed
            cause += f", or the {half[0]} forward pass overflowed: try an fp32 precision"
        raise TrainingDiverged(
            f"{self.phase}: training diverged in epoch {self.epoch + 1}: {what}. Likely "
            f"cause: {cause}; else check config.l1, config.weight_decay and the input data. "
            "The phase is not marked done; its last good epoch stays checkpointed.")


def _current_lr(model) -> Optional[float]:
    try:
        return float(np.asarray(model.optimizer.learning_rate))   # either Keras
    except (AttributeError, TypeError, ValueError):
        return None


def chance_level(num_classes: int, n: int) -> float:
    """1/C + 3 sqrt(p (1 - p) / n), p = 1/C: the top-1 accuracy a guess reaches (3 sigma)."""
    if num_classes < 1 or n < 1:
        raise ValueError(f"chance_level needs num_classes >= 1 and n >= 1 test images, got "
                         f"num_classes={num_classes!r}, n={n!r}")
    p = 1.0 / num_classes
    return p + 3.0 * math.sqrt(p * (1.0 - p) / n)


def scored_test_images(splits, cfg) -> int:
    """Test images `trainer.evaluate` scores: all, or the first `cfg.eval_batches` batches."""
    n = int(splits.num_test)
    return min(n, cfg.eval_batches * int(splits.batch_size)) if cfg.eval_batches else n


def _label(name: str, report: dict) -> str:
    return f"ticket p={name}" if name in report.get("eb", {}) or \
        name in report.get("ticket", {}) else f"model {name!r}"


def report_warnings(report: dict, cfg, num_classes: Optional[int] = None,
                    test_images: Optional[int] = None,
                    search_history: Sequence[dict] = ()) -> List[str]:
    """One sentence per useless result of a run's report (empty: nothing looks wrong).

    Checks, in this order: a ticket not found before T (methods that stop at the
    ticket); a retrain of 0 epochs; a final test accuracy <= `chance_level(num_classes,
    test_images)` (skipped without them); a final validation accuracy more than
    `MAX_DROP` below the best `val_accuracy` of `search_history` (search/history.json).
    """
    out, final = [], report.get("final", {})
    if methods.get(cfg.method).stops_at_ticket:
        for name, eb in report.get("eb", {}).items():
            if not eb.get("found"):
                last = next((d for d in reversed(eb.get("distances") or []) if d is not None),
                            None)
                tail = "" if last is None else f", last mask distance {last:.3g}"
                out.append(f"ticket p={name}: no Early-Bird ticket emerged before T="
                           f"{cfg.epochs} (threshold {eb.get('threshold', cfg.threshold):g}"
                           f"{tail}), so it was drawn at epoch {eb.get('epoch')}; give the "
                           "search more epochs (config.epochs) or a larger config.threshold"
                           + (" or a smaller config.window" if cfg.window > 2 else ""))
    by_ratio = report.get("phases", {}).get("retrain", {}).get("by_ratio", {})
    for name, phase in by_ratio.items():
        if phase.get("epochs") == 0:
            out.append(f"ticket p={name}: its retrain ran 0 epochs (drawn at epoch "
                       f"{phase.get('start_epoch')} of T={cfg.epochs}), so it was never "
                       "trained after pruning; raise config.epochs so the ticket emerges "
                       "earlier, or use config.retrain='reinit'")
    if num_classes and test_images:
        level = chance_level(num_classes, test_images)
        for name, entry in final.items():
            if entry.get("test") is not None and entry["test"] <= level:
                out.append(f"{_label(name, report)}: test accuracy {entry['test']:.4f} is at "
                           f"chance level (<= {level:.4f} = 1/{num_classes} + 3 sigma on "
                           f"{test_images} test images): it learnt nothing; lower config.lr, "
                           "train longer (config.epochs) or check the labels")
    search_val = [(h["val_accuracy"], h.get("epoch")) for h in search_history
                  if h.get("val_accuracy") is not None]
    if search_val:
        best, epoch = max(search_val, key=lambda v: (v[0], -(v[1] or 0)))
        for name, entry in final.items():
            acc = entry.get("validation")
            if acc is not None and round(best - acc, 9) > MAX_DROP:
                out.append(f"{_label(name, report)}: validation accuracy {acc:.4f} is "
                           f"{100 * (best - acc):.1f} points below the search's best "
                           f"{best:.4f} (epoch {epoch}): the final model lost what the "
                           "search learnt; lower config.lr, retrain longer or use a "
                           "smaller ratio")
    return out


def record(rd, cfg, splits) -> dict:
    """Stores `report_warnings` of `rd`'s report as its `"warnings"`, warns, returns it."""
    history_path = rd.search_dir("history.json")
    history = io_utils.read_json(history_path) if os.path.exists(history_path) else []
    report = rd.report()
    found = report_warnings(report, cfg, splits.num_classes,
                            scored_test_images(splits, cfg), history)
    for sentence in found:
        warnings.warn(sentence, HealthWarning, stacklevel=3)
    return rd.update_report(warnings=found)


def raise_if_strict(report: dict, cfg, workdir: str):
    """Raises `RunWarnings` if `cfg.strict` and the report holds warnings."""
    found = report.get("warnings") or []
    if cfg.strict and found:
        raise RunWarnings(
            f"config.strict=True and the run in --workdir {workdir!r} ended with "
            f"{len(found)} warning(s): " + " ".join(f"({i}) {w}." for i, w in
                                                   enumerate(found, 1)) +
            " They are in its report.json 'warnings'; fix the run, or accept it without "
            "--config.strict (the folder resumes either way).", found)
