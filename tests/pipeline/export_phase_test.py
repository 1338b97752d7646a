"""Tests of eb_tf/export_phase.py and binaries/eb_export.py on run folders."""
import os
import subprocess
import sys

import pytest

import eb_tf
from eb_tf import io_utils
from eb_tf.compat import keras
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import draw, export_phase, run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _net(width, name, input_shape):
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name=name)


@pytest.fixture(scope="module")
def splits():
    return eb_tf.data.load("digits", batch_size=64, seed=0)


@pytest.fixture
def fake_run(tmp_path, splits):
    """A run folder as eb_train leaves it (dense search model + one final ticket)."""
    cfg = eb_config.from_config_dict({"dataset": "digits", "model": "convnet",
                                      "batch_size": 64, "eval_batches": 2})
    rd = run_dir.RunDir.open(str(tmp_path / "run"), cfg)
    shape = tuple(splits.input_shape)
    io_utils.atomic_save_model(_net(16, "dense", shape), rd.search_dir("final.keras"))
    io_utils.atomic_save_model(_net(8, "ticket", shape), rd.retrain_dir(0.5, "final.keras"))
    rd.update_report(final={"0.5": {"model": "retrain/p0.5/final.keras", "test": 0.1}})
    return rd


def test_export_run_writes_files_table_and_report_section(fake_run, splits):
    section = export_phase.export_run(fake_run.path, mode="int8", side_by_side=True,
                                    num_runs=3, splits=splits)
    assert list(section["models"]) == ["dense", "0.5"] and section["baseline"] == "dense"
    ticket = section["models"]["0.5"]
    assert ticket["path"] == os.path.join("export", "0.5", "model_int8.tflite")
    assert ticket["keras_model"] == "retrain/p0.5/final.keras"
    assert os.path.getsize(fake_run.file(ticket["path"])) == ticket["size_bytes"]
    assert ticket["input_dtypes"] == ticket["output_dtypes"] == ["int8"]
    assert ticket["calibration"] == "representative"
    assert section["models"]["dense"]["size_ratio"] == 1.0
    assert 0 < ticket["flops_ratio"] < 0.6 and 0 < ticket["size_ratio"] < 1
    ticket_model = draw.load_model(fake_run.file("retrain/p0.5/final.keras"))
    test = splits.test().take(2)                               # config.eval_batches = 2
    assert ticket["keras_acc"] == eb_tf.evaluate_accuracy(ticket_model, test)
    assert ticket["tflite_acc"] == eb_tf.evaluate_accuracy(fake_run.file(ticket["path"]), test)
    report = fake_run.report()
    assert report["export"]["int8"]["models"]["0.5"]["size_bytes"] == ticket["size_bytes"]
    assert report["final"]["0.5"]["test"] == 0.1                 # other sections untouched
    with open(fake_run.file("export", "summary_int8.md")) as f:
        assert f.read().splitlines()[3].startswith("| 0.5 | int8 |")
    # a second mode adds to the section, does not replace it
    export_phase.export_run(fake_run.path, mode="float32", models=["0.5"], evaluate=False,
                          num_runs=2, splits=splits)
    assert set(fake_run.report()["export"]) == {"int8", "float32"}


def test_export_run_rejects_bad_input(fake_run, tmp_path):
    with pytest.raises(ValueError, match=r"models=\['0.7'\]: each must be a final model of "
                                         r"the run, one of \['0.5'\]"):
        export_phase.export_run(fake_run.path, models=["0.7"])
    with pytest.raises(ValueError, match="mode='int16' is not a TFLite export mode"):
        export_phase.export_run(fake_run.path, mode="int16")
    with pytest.raises(ValueError, match="is not a run folder"):
        export_phase.export_run(str(tmp_path / "nowhere"))
    empty = run_dir.RunDir.open(str(tmp_path / "empty"), fake_run.cfg)
    with pytest.raises(ValueError, match="has no final models in report.json yet"):
        export_phase.export_run(empty.path)


@pytest.mark.slow
def test_eb_export_binary_on_a_real_smoke_run(tmp_path):
    """eb_train (smoke quickstart) then eb_export --mode=int8 --side_by_side."""
    workdir = str(tmp_path / "run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "binaries.eb_train",
                    "--config=configs/quickstart.py:smoke", f"--workdir={workdir}"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "binaries.eb_export", f"--workdir={workdir}",
                          "--mode=int8", "--side_by_side", "--num_runs=20"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert "| dense | int8 |" in out.stdout and "| 0.5 | int8 |" in out.stdout
    section = io_utils.read_json(os.path.join(workdir, "report.json"))["export"]["int8"]
    assert section["models"]["0.5"]["input_dtypes"] == ["int8"]
    assert section["models"]["0.5"]["flops_ratio"] < 1
    bad = subprocess.run([sys.executable, "-m", "binaries.eb_export", f"--workdir={workdir}",
                          "--models=0.9"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "each must be a final model of the run" in bad.stderr
