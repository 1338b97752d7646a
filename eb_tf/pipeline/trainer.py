"""Resumable epoch training for the pipeline: compile, per-epoch checkpoint, fit, evaluate.

`fit_resumable` runs `model.fit(initial_epoch=start, epochs=T)` with the epoch-indexed
learning-rate schedule and writes, after every completed epoch, one checkpoint folder
(model + optimizer variables through `tf.train.Checkpoint`, and a JSON state: epoch,
EarlyBird state, cost meter, history) that replaces the previous one atomically. Run
again after a kill, it restores the last completed epoch and continues, so with op
determinism and the stateless data pipeline the run is the same as an uninterrupted one.

Example:

    from eb_tf.pipeline import trainer
    trainer.compile_for_training(model, cfg, splits)
    result = trainer.fit_resumable(model, cfg, splits, "run/search/ckpt",
                                   initial_epoch=0, stateful={"earlybird": eb})
"""
import io
import json
import os
from typing import Dict, List, Optional

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import keras, keras_for, tf
from eb_tf.pipeline import costs, fit_clock, health, schedules

__all__ = ["compile_for_training", "training_loss", "EpochCheckpoint", "MaskRecorder",
           "SaveWeightsAt", "fit_resumable", "evaluate", "samples_per_epoch",
           "outputs_probabilities", "read_mask_history"]

STATE_FILE = "state.json"
CKPT_PREFIX = "ckpt"


def outputs_probabilities(model) -> bool:
    """True if the model ends in a softmax (then the loss takes probabilities)."""
    k = keras_for(model)
    last = model.layers[-1]
    while isinstance(last, k.layers.Wrapper):
        last = last.layer
    if isinstance(last, k.layers.Softmax):
        return True
    return getattr(last, "activation", None) is k.activations.softmax


def _sparse_labels(splits) -> bool:
    spec = splits.test().element_spec
    label_spec = spec[1] if isinstance(spec, tuple) else spec
    return label_spec.shape.rank is None or label_spec.shape.rank <= 1 or \
        label_spec.shape[-1] != splits.num_classes


def training_loss(model, splits):
    """The cross-entropy a run trains `model` with: sparse or one-hot labels as `splits`
    gives them, on logits unless the model ends in a softmax (the loss of the model's
    own Keras)."""
    losses, from_probs = keras_for(model).losses, outputs_probabilities(model)
    if _sparse_labels(splits):
        return losses.SparseCategoricalCrossentropy(from_logits=not from_probs)
    return losses.CategoricalCrossentropy(from_logits=not from_probs)


def compile_for_training(model, cfg, splits, wrap_optimizer=None):
    """Compiles with a fresh SGD (momentum, nesterov) and the right cross-entropy.

    Weight decay is not an optimizer option here: it is coupled, an L2 term in the
    layer configs (`eb_tf.add_weight_decay`), as in PyTorch's SGD. `wrap_optimizer`
    (from `eb_tf.prepare_for_precision`) wraps the SGD, e.g. for fp16 loss scaling.
    """
    loss = training_loss(model, splits)
    optimizer = keras_for(model).optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum,
                                                nesterov=cfg.nesterov)
    if wrap_optimizer is not None:
        optimizer = wrap_optimizer(optimizer)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def samples_per_epoch(splits) -> int:
    """Training examples seen per epoch (a partial last batch counted exactly)."""
    return int(min(splits.steps_per_epoch * splits.batch_size, splits.num_train)) \
        if hasattr(splits, "batch_size") else int(splits.num_train)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: model + optimizer + JSON state into `path/`, atomically.

    `stateful` objects (EarlyBird...) expose `get_state()`/`set_state()`; `meter` is the
    phase's `costs.PhaseMeter`; `clock` its `fit_clock.FitClock` (told when the
    checkpoint is written; its state is saved too).
    """

    def __init__(self, path: str, stateful: Optional[Dict[str, object]] = None,
                 meter: Optional[costs.PhaseMeter] = None, history: Optional[List] = None,
                 clock: Optional[fit_clock.FitClock] = None):
        super().__init__()
        self.path = path
        self.stateful = stateful or {}
        self.meter = meter
        self.clock = clock
        self.history = history if history is not None else []

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.path, STATE_FILE))

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, **{k: _plain(v) for k, v in (logs or {}).items()}}
        if "learning_rate" in entry and "lr" not in entry:   # Keras 3's name of tf_keras' lr
            entry["lr"] = entry.pop("learning_rate")
        if self.meter is not None:
            before = self.meter.seconds
            self.meter.lap()
            entry["seconds"] = round(self.meter.seconds - before, 3)  # wall-clock, epoch
        if self.clock is not None:
            entry.update({f"{part}_seconds": round(value, 3)
                          for part, value in self.clock.last_epoch.items() if value is not None})
            self.clock.checkpoint_started()
        self.history.append(entry)
        self.save(epoch + 1)
        if self.clock is not None:
            self.clock.checkpoint_done()

    def save(self, epoch: int):
        state = {"epoch": int(epoch), "history": self.history,
                 "meter": self.meter.state() if self.meter else None,
                 "clock": self.clock.state() if self.clock else None,
                 "stateful": {k: v.get_state() for k, v in self.stateful.items()}}
        with io_utils.atomic_dir(self.path) as tmp:
            tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(
                os.path.join(tmp, CKPT_PREFIX))
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump(state, f)

    def restore(self, model) -> dict:
        """Loads the last epoch into `model` (compiled) and the stateful objects."""
        state = io_utils.read_json(os.path.join(self.path, STATE_FILE))
        model.optimizer.build(model.trainable_variables)
        status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(
            os.path.join(self.path, CKPT_PREFIX))
        status.assert_existing_objects_matched()
        for name, obj in self.stateful.items():
            obj.set_state(state["stateful"][name])
        self.history[:] = state["history"]
        return state


class SaveWeightsAt(keras.callbacks.Callback):
    """Saves the weights at the end of epoch `epoch` (from 1) to `path` (.h5), once."""

    def __init__(self, epoch: int, path: str):
        super().__init__()
        self.epoch, self.path = int(epoch), path

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            io_utils.atomic_save_weights(self.model, self.path)


class MaskRecorder(keras.callbacks.Callback):
    """Keeps every epoch's mask of an `EarlyBird` in `folder/p{r}.npz` (for Fig. 3).

    Each file holds `epochs` (n,), `masks` (n, channels) bool, `keys` and `sizes` (to
    split a row back into per-layer masks). Put it after the EarlyBird callback.
    """

    def __init__(self, bird, folder: str):
        super().__init__()
        self.bird, self.folder = bird, folder
        self.rows = {}

    def _path(self, ratio):
        return os.path.join(self.folder, f"p{ratio:g}.npz")

    def on_train_begin(self, logs=None):
        last = self.bird.epochs[-1] if self.bird.epochs else 0  # restored on resume
        for ratio in self.bird.ratios:
            rows = []
            if os.path.exists(self._path(ratio)):
                history = read_mask_history(self._path(ratio))
                rows = [(int(e), m) for e, m in zip(history["epochs"], history["masks"])
                        if e <= last]
            self.rows[ratio] = rows

    def on_epoch_end(self, epoch, logs=None):
        for ratio in self.bird.ratios:
            mask = self.bird.latest_masks[ratio]
            self.rows[ratio].append((self.bird.epochs[-1],
                                     np.concatenate([mask[k] for k in mask])))
            buffer = io.BytesIO()
            np.savez(buffer, epochs=np.array([e for e, _ in self.rows[ratio]], np.int64),
                     masks=np.stack([m for _, m in self.rows[ratio]]),
                     keys=np.array(list(mask)), sizes=np.array([mask[k].size for k in mask]))
            io_utils.atomic_write_bytes(self._path(ratio), buffer.getvalue())


def read_mask_history(path: str) -> dict:
    """{"epochs", "masks" (n, channels) bool, "keys", "sizes"} of a MaskRecorder file."""
    with np.load(path) as data:
        return {"epochs": data["epochs"], "masks": data["masks"].astype(bool),
                "keys": [str(k) for k in data["keys"]], "sizes": data["sizes"]}


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if hasattr(value, "numpy"):
        value = value.numpy().item()
    if isinstance(value, float) and value != value:
        return None  # NaN (EB distance before the window is full) -> JSON null
    return value


def fit_resumable(model, cfg, splits, ckpt_dir: str, initial_epoch: int,
                  callbacks=(), stateful: Optional[Dict[str, object]] = None,
                  tb_dir: Optional[str] = None, done=None) -> dict:
    """`model.fit` from `initial_epoch` to `cfg.epochs`, resuming from `ckpt_dir`.

    Args:
      model: a compiled model.
      cfg: the `RunConfig` (epochs, lr schedule, eval_batches, verbose).
      splits: an `eb_tf.data` Splits.
      ckpt_dir: the phase's checkpoint folder.
      initial_epoch: first epoch (0-based) when nothing is checkpointed yet.
      callbacks: run before the checkpoint (so their state at epoch end is saved).
      stateful: {name: object with get_state/set_state} saved in the checkpoint.
      tb_dir: TensorBoard log folder, or None.
      done: optional `() -> bool`; if true after a restore, training is not resumed
        (e.g. every Early-Bird ticket already found).

    Returns:
      {"start_epoch", "end_epoch", "epochs_run" (completed in all sessions), "history",
       "meter" (the PhaseMeter), "timing" (`fit_clock.FitClock.state()`: seconds of
       set-up, training steps, validation, epoch-end work, checkpoints, tear-down, and
       the steps run, all sessions)}.

    Raises:
      eb_tf.pipeline.health.TrainingDiverged: (a ValueError) the loss or the weights
        became NaN/Inf; names the phase (from `ckpt_dir`), the epoch and the likely
        cause; the last completed epoch stays checkpointed.
    """
    meter, clock = costs.PhaseMeter(), fit_clock.FitClock()
    ckpt = EpochCheckpoint(ckpt_dir, stateful, meter, clock=clock)
    start = initial_epoch
    if ckpt.exists():
        state = ckpt.restore(model)
        start = int(state["epoch"])
        meter = costs.PhaseMeter(state.get("meter"), counter=meter.counter)
        clock = fit_clock.FitClock(state.get("clock"))
        ckpt.meter, ckpt.clock = meter, clock
        if cfg.verbose:
            print(f"resuming from the checkpoint of epoch {start} in {ckpt_dir}")
    end = start
    if start < cfg.epochs and not (done is not None and start > initial_epoch and done()):
        k = keras_for(model)       # the callbacks of the model's own Keras
        lr = schedules.keras_callback(cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.lr_decay,
                                      cfg.warmup_epochs, keras_module=k)
        extra = [k.callbacks.TensorBoard(tb_dir, profile_batch=0)] if tb_dir else []
        # First: a NaN stops the phase before EarlyBird and the checkpoint see it.
        check = health.DivergenceCheck(health.phase_of(ckpt_dir), cfg)
        meter.start()
        clock.fit_called()
        model.fit(splits.train_epochs(start, cfg.epochs), steps_per_epoch=splits.steps_per_epoch,
                  initial_epoch=start, epochs=cfg.epochs, validation_data=eval_data(
                      splits.validation(), cfg),
                  callbacks=[clock, check, lr, *callbacks, *extra, ckpt], verbose=cfg.verbose)
        clock.fit_returned()
        meter.stop()
        end = ckpt.history[-1]["epoch"] if ckpt.history else start
    return {"start_epoch": initial_epoch, "end_epoch": int(end),
            "epochs_run": int(end) - initial_epoch, "history": ckpt.history, "meter": meter,
            "timing": clock.state()}


def eval_data(dataset, cfg):
    """The first `cfg.eval_batches` batches (all if 0); None stays None."""
    if dataset is None or not cfg.eval_batches:
        return dataset
    return dataset.take(cfg.eval_batches)


def evaluate(model, splits, cfg) -> dict:
    """{"validation": top-1, "test": top-1} of a trained model (compiled afresh here)."""
    compile_for_training(model, cfg, splits)  # the loss/metric evaluation needs
    out = {}
    for name, data in (("validation", splits.validation()), ("test", splits.test())):
        if data is None:  # validation_fraction=0
            out[name] = None
            continue
        metrics = model.evaluate(eval_data(data, cfg), verbose=0, return_dict=True)
        out[name] = round(float(metrics["accuracy"]), 6)
    return out
