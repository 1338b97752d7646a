"""Tests of eb_tf.pipeline.schedules: the paper's step schedule, warm-up, presets, Keras callback."""
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from eb_tf.compat import keras
from eb_tf.pipeline import schedules


def test_paper_schedule_is_0_1_then_div_10_at_80_and_120_of_160():
    lrs = [schedules.step_lr(e, 0.1, 160) for e in range(160)]
    assert lrs[0] == lrs[79] == 0.1
    assert lrs[80] == pytest.approx(0.01) and lrs[119] == pytest.approx(0.01)
    assert lrs[120] == pytest.approx(0.001) and lrs[159] == pytest.approx(0.001)
    assert len(set(np.round(lrs, 12))) == 3


def test_small_lr_preset_is_the_reference_0_100_schedule():
    p = schedules.PRESETS["small_lr"]
    lr = [schedules.step_lr(e, p["lr"], 160, p["milestones"], p["decay"]) for e in (0, 99, 100)]
    assert lr == pytest.approx([0.01, 0.01, 0.001])


def test_milestones_round_half_up():
    # 0.5 * 5 = 2.5 -> from epoch 3; 0.75 * 5 = 3.75 -> from epoch 4
    assert [schedules.step_lr(e, 1.0, 5) for e in range(5)] == pytest.approx(
        [1, 1, 1, 0.1, 0.01])


def test_warmup_ramps_linearly_to_the_peak():
    p = schedules.PRESETS["large_lr"]
    lr = [schedules.step_lr(e, p["lr"], 160, p["milestones"], p["decay"], p["warmup_epochs"])
          for e in range(7)]
    assert lr == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5])


@hypothesis.given(st.integers(1, 400), st.data())
def test_schedule_is_non_increasing_after_warmup_and_bounded(epochs, data):
    e = data.draw(st.integers(0, epochs - 1))
    lr = schedules.step_lr(e, 0.1, epochs)
    assert 0.1 * 0.01 - 1e-12 <= lr <= 0.1
    if e + 1 < epochs:
        assert schedules.step_lr(e + 1, 0.1, epochs) <= lr


@pytest.mark.parametrize("kwargs, message", [
    (dict(epoch=-1, lr=0.1, epochs=10), "epoch=-1 must be >= 0"),
    (dict(epoch=0, lr=0.0, epochs=10), "lr=0.0 must be > 0"),
    (dict(epoch=0, lr=0.1, epochs=0), "epochs=0 must be >= 1"),
    (dict(epoch=0, lr=0.1, epochs=10, milestones=(1.5,)), r"milestones=\(1.5,\) must be"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        schedules.step_lr(**kwargs)


def test_keras_callback_sets_the_epoch_indexed_rate_when_resuming_at_t():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seen.append(float(model.optimizer.learning_rate)))
    x = np.zeros((4, 1), np.float32)
    model.fit(x, x, epochs=10, initial_epoch=4, verbose=0,
              callbacks=[schedules.keras_callback(0.1, 10), record])
    assert seen == pytest.approx([0.1, 0.01, 0.01, 0.01, 0.001, 0.001])  # /10 at 5 and 8
