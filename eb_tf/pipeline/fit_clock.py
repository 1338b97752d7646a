"""Where a training phase's wall-clock goes: steps, validation, epoch-end work, start, end.

`FitClock` is a Keras callback that `trainer.fit_resumable` puts first in `model.fit`
and that the per-epoch checkpoint tells when it writes. It splits the phase's seconds
into:

- `setup`: from the `fit` call to `on_train_begin` (iterator, tf.function set-up);
- `train`: epoch begin to validation begin (or epoch end): the training steps, with the
  input pipeline and the fit loop's per-step Python;
- `validation`: `fit`'s own evaluation of `validation_data` (`on_test_begin`/`end`);
- `epoch_end`: the epoch-end callbacks before the checkpoint (EarlyBird's masks, the
  mask recorder, the lr schedule);
- `checkpoint`: writing the epoch's checkpoint folder;
- `teardown`: after the last checkpoint until `fit` returns.

The steps are counted too, so that a phase's overhead (its seconds beyond `steps` x
the bare step time, `eb_tf.bench.report.overheads`) can be read. The clock takes no
per-batch hook (those would cost every step), and its state goes into the checkpoint:
a resumed phase keeps counting (the seconds lost to a kill are not counted).

Example:

    clock = fit_clock.FitClock()
    clock.fit_called()
    model.fit(data, epochs=3, callbacks=[clock, ...])
    clock.fit_returned()
    clock.state()      # {"setup": 0.4, "train": 11.9, "validation": 1.2, ..., "steps": 120}
"""
import time
from typing import Optional

from eb_tf.compat import keras

__all__ = ["PARTS", "FitClock"]

PARTS = ("setup", "train", "validation", "epoch_end", "checkpoint", "teardown")


class FitClock(keras.callbacks.Callback):
    """Seconds per part of `model.fit` (see the module docstring), accumulated."""

    def __init__(self, state: Optional[dict] = None):
        super().__init__()
        state = state or {}
        self.seconds = {part: float(state.get(part, 0.0)) for part in PARTS}
        self.steps = int(state.get("steps", 0))
        self.last_epoch = {"train": None, "validation": None}
        self._fit0 = self._epoch0 = self._val0 = self._end0 = self._idle0 = None

    def _add(self, part: str, since: Optional[float]) -> float:
        now = time.perf_counter()
        if since is not None:
            self.seconds[part] += now - since
        return now

    def fit_called(self):
        """Call right before `model.fit`."""
        self._fit0 = time.perf_counter()
        self._idle0 = None

    def on_train_begin(self, logs=None):
        self._add("setup", self._fit0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch0, self._val0 = time.perf_counter(), None
        self.last_epoch = {"train": None, "validation": None}

    def on_test_begin(self, logs=None):
        if self._epoch0 is not None and self._val0 is None:   # fit's validation
            self._val0 = self._add("train", self._epoch0)
            self.last_epoch["train"] = self._val0 - self._epoch0

    def on_test_end(self, logs=None):
        if self._val0 is not None:
            now = self._add("validation", self._val0)
            self.last_epoch["validation"] = now - self._val0

    def on_epoch_end(self, epoch, logs=None):
        if self._val0 is None:
            now = self._add("train", self._epoch0)
            self.last_epoch["train"] = now - self._epoch0
        self._end0 = time.perf_counter()
        self.steps += int((self.params or {}).get("steps") or 0)
        self._epoch0 = None

    def checkpoint_started(self):
        """The checkpoint of this epoch begins (the epoch-end callbacks are done)."""
        self._end0 = self._add("epoch_end", self._end0)

    def checkpoint_done(self):
        self._idle0 = self._add("checkpoint", self._end0)

    def fit_returned(self):
        """Call right after `model.fit` returns."""
        self._add("teardown", self._idle0 if self._idle0 is not None else self._end0)
        self._idle0 = self._end0 = None

    def state(self) -> dict:
        """JSON: seconds per part (rounded to ms) and `steps`; `FitClock(state)` resumes."""
        return {**{part: round(value, 3) for part, value in self.seconds.items()},
                "steps": self.steps}
