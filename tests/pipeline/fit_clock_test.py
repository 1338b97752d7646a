"""fit_clock: a phase's seconds split into set-up, steps, validation, epoch end, checkpoint."""
import json

import numpy as np
import pytest

from eb_tf.compat import keras
from eb_tf.pipeline import build, config, fit_clock, runner
from tests.pipeline_testlib import smoke_config


def test_a_phase_record_holds_its_clock_and_the_parts_add_up(tmp_path):
    cfg = smoke_config()
    report = runner.run(cfg, str(tmp_path), phases=("search",), print_summary=False)
    search = report["phases"]["search"]
    timing = search["timing"]
    assert set(timing) == set(fit_clock.PARTS) | {"steps"}
    assert timing["steps"] == search["epochs"] * build.load_splits(
        config.from_config_dict(cfg.to_dict())).steps_per_epoch
    parts = sum(timing[p] for p in fit_clock.PARTS)
    # fit's own seconds are the meter's; the clock splits them (fit's internals between
    # the hooks are the few milliseconds left over).
    assert 0.9 * search["seconds"] <= parts <= search["seconds"] + 1e-3
    assert timing["train"] > 0 and timing["validation"] > 0 and timing["checkpoint"] > 0
    history = json.loads((tmp_path / "search" / "history.json").read_text())
    assert all(h["train_seconds"] > 0 and h["validation_seconds"] > 0 for h in history)
    assert sum(h["train_seconds"] for h in history) == pytest.approx(timing["train"], abs=0.01)


def test_the_clock_without_validation_counts_the_whole_epoch_as_training():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    clock = fit_clock.FitClock({"train": 1.0, "steps": 5})
    clock.fit_called()
    model.fit(np.zeros((12, 4)), np.zeros((12, 2)), batch_size=4, epochs=2, verbose=0,
              callbacks=[clock])
    clock.fit_returned()
    state = clock.state()
    assert state["steps"] == 5 + 2 * 3 and state["validation"] == 0.0
    assert state["train"] > 1.0 and state["setup"] > 0 and state["teardown"] >= 0
    assert fit_clock.FitClock(state).state() == state
