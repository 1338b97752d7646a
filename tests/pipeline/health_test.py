"""Tests of eb_tf.pipeline.health: a diverged phase is an error, a useless result a warning."""
import dataclasses
import math
import os
import re
import types
import warnings

import numpy as np
import pytest

from eb_tf import io_utils
from eb_tf.compat import keras
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import draw, health, run_dir, runner
from tests.pipeline_testlib import read_report, run_binary, smoke_config

# Digits/convnet, 8 epochs on all 1,294 training images: test accuracy ~0.78, the ticket at
# epoch 6 of 8, about 8 s on 2 cores. (The quickstart smoke is itself at chance level.)
HEALTHY = dict(smoke=False, epochs=8, train_subset=0, batch_size=32, window=2, width=0.5,
               eval_batches=0, lr=0.1)
CFG = eb_config.RunConfig(epochs=4, window=2)
HISTORY = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.9722},
           {"epoch": 3, "val_accuracy": 0.9}]


def _report(found=True, retrain_epochs=1, test=0.9, validation=0.9):
    """A hand-made eb report: ticket p=0.5 drawn at epoch 3 (or 4 = T), retrained to T."""
    return {"method": "eb", "ticket": {"0.5": {}},
            "eb": {"0.5": {"epoch": 3 if found else 4, "found": found, "threshold": 0.1,
                           "distances": [None, 0.3, 0.05]}},
            "phases": {"retrain": {"by_ratio": {"0.5": {
                "epochs": retrain_epochs, "start_epoch": 4 - retrain_epochs}}}},
            "final": {"0.5": {"test": test, "validation": validation}}}


# ---------------------------------------------------------------- chance arithmetic
@pytest.mark.parametrize("classes, n, level", [
    (10, 64, 0.2125),                     # 0.1 + 3 * sqrt(0.09 / 64) = 0.1 + 3 * 0.0375
    (2, 100, 0.65),                       # 0.5 + 3 * 0.05
    (4, 75, 0.4),                         # 0.25 + 3 * sqrt(0.1875 / 75) = 0.25 + 3 * 0.05
    (10, 360, 0.1474341649025257),        # the digits test split
    (100, 10000, 0.01298496231131986)])
def test_chance_level_is_one_over_c_plus_three_sigma(classes, n, level):
    assert health.chance_level(classes, n) == pytest.approx(level, abs=1e-15)


def test_chance_warning_fires_at_the_threshold_and_not_above_it():
    def chance(test):
        found = health.report_warnings(_report(test=test), CFG, num_classes=4, test_images=75)
        return [w for w in found if "chance level" in w]
    assert chance(0.4) == ["ticket p=0.5: test accuracy 0.4000 is at chance level (<= 0.4000 "
                           "= 1/4 + 3 sigma on 75 test images): it learnt nothing; lower "
                           "config.lr, train longer (config.epochs) or check the labels"]
    assert chance(0.25) and not chance(0.4001)
    assert not health.report_warnings(_report(test=0.1), CFG)   # no class count: skipped
    with pytest.raises(ValueError, match="num_classes >= 1 and n >= 1 test images, got "
                                         "num_classes=10, n=0"):
        health.chance_level(10, 0)


def test_scored_test_images_counts_the_eval_batches_only():
    splits = types.SimpleNamespace(num_test=360, batch_size=32)
    assert health.scored_test_images(splits, CFG) == 360                    # eval_batches 0
    assert health.scored_test_images(splits, dataclasses.replace(CFG, eval_batches=2)) == 64
    assert health.scored_test_images(splits, dataclasses.replace(CFG, eval_batches=20)) == 360


# ---------------------------------------------------------------- warnings of a report
def test_a_healthy_report_has_no_warnings():
    assert health.report_warnings(_report(), CFG, 10, 360, HISTORY) == []


def test_each_useless_result_is_one_sentence_naming_the_ticket_and_the_fix():
    assert health.report_warnings(_report(found=False, retrain_epochs=0), CFG) == [
        "ticket p=0.5: no Early-Bird ticket emerged before T=4 (threshold 0.1, last mask "
        "distance 0.05), so it was drawn at epoch 4; give the search more epochs "
        "(config.epochs) or a larger config.threshold",
        "ticket p=0.5: its retrain ran 0 epochs (drawn at epoch 4 of T=4), so it was never "
        "trained after pruning; raise config.epochs so the ticket emerges earlier, or use "
        "config.retrain='reinit'"]
    wide = dataclasses.replace(CFG, epochs=8, window=3)
    assert health.report_warnings(_report(found=False), wide)[0].endswith(
        "or a larger config.threshold or a smaller config.window")
    ns = dataclasses.replace(CFG, method="ns")       # ns draws at T anyway: no ticket warning
    assert health.report_warnings(_report(found=False), ns) == []


def test_a_drop_of_more_than_20_points_below_the_search_validation_is_a_warning():
    assert health.report_warnings(_report(validation=0.7722), CFG, search_history=HISTORY) \
        == []                                        # 0.9722 - 0.7722: 20 points, not more
    assert health.report_warnings(_report(validation=0.7721), CFG, search_history=HISTORY) \
        == ["ticket p=0.5: validation accuracy 0.7721 is 20.0 points below the search's "
            "best 0.9722 (epoch 2): the final model lost what the search learnt; lower "
            "config.lr, retrain longer or use a smaller ratio"]
    dense = {"method": "dense", "final": {"dense": {"test": 0.1, "validation": 0.5}}}
    assert [w.split(":")[0] for w in health.report_warnings(
        dense, dataclasses.replace(CFG, method="dense"), 10, 360, HISTORY)] == \
        ["model 'dense'", "model 'dense'"]          # at chance, and 47 points below
    no_validation = _report(validation=None)
    assert health.report_warnings(no_validation, CFG, search_history=HISTORY) == []


def test_the_summary_table_prints_the_warnings_loudly():
    report = {"method": "eb", "config_hash": "abc", "phases": {}, "final": {},
              "warnings": ["ticket p=0.5: one", "ticket p=0.5: two"]}
    lines = run_dir.summary_table(report).splitlines()
    assert lines[-3].startswith("!!! 2 WARNING(S): this result may be useless")
    assert lines[-2:] == ["!!! ticket p=0.5: one", "!!! ticket p=0.5: two"]
    assert "WARNING" not in run_dir.summary_table({**report, "warnings": []})


def test_strict_is_a_validated_bool_outside_the_run_identity():
    base = eb_config.RunConfig()
    assert base.strict is False and "strict" in eb_config.UNHASHED_FIELDS
    assert eb_config.config_hash(dataclasses.replace(base, strict=True)) == \
        eb_config.config_hash(base)
    assert "strict = False: fail (non-zero exit)" in eb_config.describe()
    with pytest.raises(ValueError, match=re.escape(
            "config.strict='yes' is invalid: must be True or False")):
        eb_config.from_config_dict({"strict": "yes"})


# ---------------------------------------------------------------- the divergence check
def test_phase_of_names_the_phase_from_its_checkpoint_folder():
    assert health.phase_of("/runs/a/search/ckpt") == "search"
    assert health.phase_of(os.path.join("runs", "a", "retrain", "p0.5", "ckpt")) == \
        "retrain p0.5"
    assert health.phase_of("/runs/b/train/ckpt/") == "train"


def test_divergence_check_hooks_raise_naming_phase_epoch_and_lr():
    check = health.DivergenceCheck("search", dataclasses.replace(CFG, lr=10.0))
    check.on_train_begin()
    check.on_epoch_begin(2)
    assert not hasattr(check, "on_train_batch_end") or \
        type(check).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end
    with pytest.raises(health.TrainingDiverged, match=re.escape(
            "search: training diverged in epoch 3: the training loss is inf at the end of the "
            "epoch. Likely cause: the learning rate config.lr=10 is too high: try config.lr=1 "
            "or config.warmup_epochs > 0; else check config.l1")) as info:
        check.on_epoch_end(2, {"loss": float("inf")})
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(health.TrainingDiverged, match=re.escape(
            "epoch 3: the validation loss is nan at the end of the epoch")):
        check.on_epoch_end(2, {"loss": 1.0, "val_loss": float("nan")})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="head")])
    kernel, bias = model.get_weights()
    model.set_weights([kernel, np.full_like(bias, np.nan)])
    check.set_model(model)
    with pytest.raises(health.TrainingDiverged, match=r"epoch 1: weights \['head/bias.*'\] "
                                                      r"hold NaN/Inf at the end of the epoch"):
        check.on_epoch_end(0, {"loss": 1.0})


def _fp16_model(initial_scale):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, activation="relu", dtype="mixed_float16")(inputs)
    x = keras.layers.Dense(3, dtype="mixed_float16")(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax", dtype="float32")(x))
    optimizer = keras.mixed_precision.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=initial_scale)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def test_steps_skipped_by_fp16_loss_scaling_do_not_count_but_a_nan_loss_does():
    model = _fp16_model(initial_scale=2.0 ** 40)   # every scaled fp16 gradient overflows
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = np.arange(32) % 3
    before = model.get_weights()
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                        callbacks=[health.DivergenceCheck("search")])
    assert float(model.optimizer.loss_scale) == 2.0 ** 32   # 8 steps skipped, halved each
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert all(math.isfinite(loss) for loss in history.history["loss"])
    x[9, 0] = np.nan                                # in the second batch
    with pytest.raises(health.TrainingDiverged, match=re.escape(
            "search: training diverged in epoch 1: the training loss is nan at the end of the "
            "epoch. "
            "Likely cause: the learning rate is too high: lower it, or the float16 forward "
            "pass overflowed: try an fp32 precision")):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[health.DivergenceCheck("search")])


# ---------------------------------------------------------------- tiny runs
def test_nan_loss_stops_the_search_and_leaves_the_folder_resumable(tmp_path):
    workdir = str(tmp_path / "nan")
    cfg = smoke_config(lr=10.0, weight_decay=1.0)   # the weights blow up in epoch 2
    with pytest.raises(health.TrainingDiverged) as info:
        runner.run(cfg, workdir, print_summary=False)
    message = str(info.value)
    match = re.match(r"search: training diverged in epoch (\d+): the (training|validation) "
                     r"loss is nan", message)
    assert match, message
    assert "config.lr=10 (lr 10 in this epoch) is too high: try config.lr=1" in message
    assert not read_report(workdir)["phases"].get("search", {}).get("done")
    state = io_utils.read_json(os.path.join(workdir, "search", "ckpt", "state.json"))
    epoch = int(match.group(1))
    assert epoch >= 2 and state["epoch"] == epoch - 1        # the last good epoch is kept
    assert all(math.isfinite(h["loss"]) for h in state["history"])
    with pytest.raises(health.TrainingDiverged) as again:    # resumes epoch `epoch` again
        runner.run(cfg, workdir, print_summary=False)
    assert str(again.value) == message


def test_nan_loss_in_a_retrain_names_the_ratio(tmp_path):
    workdir = str(tmp_path / "retrain")
    cfg = smoke_config()
    runner.run(cfg, workdir, phases=("search", "draw"), print_summary=False)
    path = os.path.join(workdir, "tickets", "p0.5", "model.keras")
    ticket = draw.load_model(path)
    ticket.set_weights([np.full_like(w, np.nan) if i == 0 else w
                        for i, w in enumerate(ticket.get_weights())])
    io_utils.atomic_save_model(ticket, path)
    start = read_report(workdir)["ticket"]["0.5"]["retrain_start_epoch"]
    with pytest.raises(health.TrainingDiverged, match=re.escape(
            f"retrain p0.5: training diverged in epoch {start + 1}: the training loss is nan "
            "at the end of the epoch. Likely cause: the learning rate config.lr=0.05")):
        runner.run(cfg, workdir, phases=("retrain",), print_summary=False)
    assert not read_report(workdir)["phases"].get("retrain", {}).get("done")


def test_nan_pixels_are_an_error_at_load(tmp_path):
    x = np.full((12, 8, 8, 1), 0.5, np.float32)
    x[3, 0, 0, 0] = x[5, 1, 1, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=x, y_train=np.arange(12) % 2,
             x_test=x[:4].copy(), y_test=np.arange(4) % 2)
    with pytest.raises(ValueError, match=re.escape(
            f"npz:{tmp_path / 'nan.npz'} x_train holds 2 NaN and 0 Inf values (of 768)")):
        runner.run(smoke_config(dataset=f"npz:{tmp_path / 'nan.npz'}"), str(tmp_path / "run"),
                   print_summary=False)


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    """lr = 10, momentum 0.99 on the smoke run under strict: no NaN, chance accuracy (even
    with the drawn ticket's BN statistics re-estimated), a ticket only at T."""
    workdir = str(tmp_path_factory.mktemp("collapsed") / "run")
    with pytest.warns(health.HealthWarning) as warned, \
            pytest.raises(health.RunWarnings) as info:
        runner.run(smoke_config(lr=10.0, momentum=0.99, strict=True), workdir,
                   print_summary=False)
    return workdir, info.value, [str(w.message) for w in warned]


def test_strict_raises_after_writing_the_warnings_into_the_report(collapsed):
    workdir, error, warned = collapsed
    found = read_report(workdir)["warnings"]
    assert error.warnings == found == warned and isinstance(error, ValueError)
    assert found[0] == ("ticket p=0.5: its retrain ran 0 epochs (drawn at epoch 4 of T=4), "
                        "so it was never trained after pruning; raise config.epochs so the "
                        "ticket emerges earlier, or use config.retrain='reinit'")
    assert re.fullmatch(r"ticket p=0\.5: test accuracy 0\.\d{4} is at chance level \(<= "
                        r"0\.2125 = 1/10 \+ 3 sigma on 64 test images\).*", found[1])
    assert len(found) == 2
    message = str(error)
    assert "\n" not in message and message.startswith(
        f"config.strict=True and the run in --workdir {workdir!r} ended with 2 warning(s): "
        "(1) ticket p=0.5: its retrain ran 0 epochs")


def test_without_strict_the_same_folder_resumes_and_keeps_one_copy_of_each_warning(
        collapsed):
    workdir, _, _ = collapsed
    before = read_report(workdir)
    with pytest.warns(health.HealthWarning):
        report = runner.run(smoke_config(lr=10.0, momentum=0.99), workdir, print_summary=False)
    assert report["warnings"] == before["warnings"] and len(report["warnings"]) == 2
    assert report["phases"] == before["phases"]                 # nothing trained again


def test_eb_train_with_strict_exits_1_with_a_one_line_error(collapsed):
    workdir, _, _ = collapsed
    proc = run_binary("eb_train", "--config=configs/quickstart.py:smoke", f"--workdir={workdir}",
                      "--config.lr=10", "--config.momentum=0.99", "--config.verbose=0",
                      "--config.tensorboard=False", "--config.strict=True")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "!!! 2 WARNING(S)" in proc.stdout and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "config.strict=True and" in line]
    assert len(lines) == 1 and lines[0].endswith("(the folder resumes either way).")


def test_an_epochs_short_run_warns_that_no_ticket_emerged(tmp_path):
    with pytest.warns(health.HealthWarning):
        # two masks, 2 epochs apart from the initialisation: not within 0.001 of each other
        report = runner.run(smoke_config(epochs=2, threshold=0.001), str(tmp_path / "short"),
                            print_summary=False)
    assert not report["eb"]["0.5"]["found"]
    assert report["warnings"][0].startswith(
        "ticket p=0.5: no Early-Bird ticket emerged before T=2 (threshold 0.001")
    assert report["warnings"][1].startswith(
        "ticket p=0.5: its retrain ran 0 epochs (drawn at epoch 2 of T=2)")


def test_a_healthy_run_has_no_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = runner.run(smoke_config(**HEALTHY), str(tmp_path / "healthy"),
                            print_summary=False)
    assert report["warnings"] == [], report["warnings"]
    assert not [w for w in caught if issubclass(w.category, health.HealthWarning)]
    assert report["eb"]["0.5"]["found"] and report["phases"]["retrain"]["epochs"] > 0
    assert report["final"]["0.5"]["test"] > health.chance_level(10, 360) + 0.3
    assert "WARNING" not in run_dir.summary_table(report)
