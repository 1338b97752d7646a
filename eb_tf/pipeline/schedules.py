"""Epoch-indexed learning-rate schedules: the paper's step schedule and its variants.

The schedule is a function of the absolute epoch index, so a retrain that starts at
the ticket epoch t (`model.fit(initial_epoch=t, epochs=T)`) continues the very same
curve the search was on: search + retrain = one budget of T epochs.

- `step_lr`: lr0, divided by 10 at 50% and 75% of T (the paper: 0.1 for 160 epochs,
  /10 at 80 and 120), with an optional linear warm-up.
- Presets (`PRESETS`): `paper` (the above), `small_lr` (the reference code's
  `--schedule 0 100` ablation: lr0 x 0.1 from the start, /10 again at 62.5% of T), and
  `large_lr`, a larger-learning-rate variant for the paper's observation that EB
  tickets emerge (early) at large learning rates (its Appendix A.2 ablation). The
  exact values (lr0 = 0.5, 5 linear warm-up epochs so that SGD+BN does not diverge)
  are ours, not copied from the paper.

Example:

    from eb_tf.pipeline import schedules
    sched = schedules.keras_callback(lr=0.1, epochs=160)   # LearningRateScheduler
    schedules.step_lr(80, lr=0.1, epochs=160)               # -> 0.01
"""
import math
from typing import Sequence

from eb_tf.compat import keras

__all__ = ["step_lr", "keras_callback", "PRESETS"]

PRESETS = {
    "paper": dict(lr=0.1, milestones=(0.5, 0.75), decay=0.1, warmup_epochs=0),
    "small_lr": dict(lr=0.1, milestones=(0.0, 0.625), decay=0.1, warmup_epochs=0),
    "large_lr": dict(lr=0.5, milestones=(0.5, 0.75), decay=0.1, warmup_epochs=5),
}


def _milestone_epochs(milestones: Sequence[float], epochs: int):
    # Half up (not Python's banker's rounding): 0.5 * 160 = 80 as the reference's
    # [80, 120]; 0.75 * 10 = 7.5 -> 8, 0.5 * 5 = 2.5 -> 3.
    return [int(math.floor(m * epochs + 0.5)) for m in milestones]


def step_lr(epoch: int, lr: float, epochs: int, milestones: Sequence[float] = (0.5, 0.75),
            decay: float = 0.1, warmup_epochs: int = 0) -> float:
    """The learning rate of epoch `epoch` (0-based, as Keras counts).

    Args:
      epoch: absolute epoch index in [0, epochs).
      lr: the initial (peak) learning rate.
      epochs: the budget T.
      milestones: fractions of T; from epoch m*T (rounded half up) on, lr is multiplied
        by `decay`.
      decay: factor per milestone.
      warmup_epochs: epochs 0..w-1 ramp linearly from lr/w to lr.

    Returns:
      The learning rate as a Python float.

    Raises:
      ValueError: epoch < 0, epochs < 1, lr <= 0 or a milestone outside [0, 1].
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if epoch < 0:
        raise ValueError(f"epoch={epoch} must be >= 0")
    if lr <= 0:
        raise ValueError(f"lr={lr} must be > 0")
    if any(not 0 <= m <= 1 for m in milestones):
        raise ValueError(f"milestones={tuple(milestones)} must be fractions of T in [0, 1]")
    value = float(lr)
    for boundary in _milestone_epochs(milestones, epochs):
        if epoch >= boundary:
            value *= decay
    if warmup_epochs and epoch < warmup_epochs:
        value *= (epoch + 1) / warmup_epochs
    return value


def keras_callback(lr: float, epochs: int, milestones: Sequence[float] = (0.5, 0.75),
                   decay: float = 0.1, warmup_epochs: int = 0, verbose: int = 0,
                   keras_module=keras):
    """A `keras.callbacks.LearningRateScheduler` applying `step_lr` at each epoch start.

    Because Keras passes the absolute epoch index, `fit(initial_epoch=t)` resumes the
    schedule at epoch t. `keras_module` is the model's Keras (`eb_tf.compat.keras_for`):
    tf_keras by default, `keras` (Keras 3) for a Keras 3 model, whose `fit` logs the
    rate as `learning_rate` where tf_keras logs `lr`.
    """
    milestones = tuple(milestones)

    def schedule(epoch, _current_lr):
        return step_lr(epoch, lr, epochs, milestones, decay, warmup_epochs)

    return keras_module.callbacks.LearningRateScheduler(schedule, verbose=verbose)
