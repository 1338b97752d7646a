"""The binaries as a user runs them: `python -m binaries.<name>` subprocesses on tiny data.

Subprocesses rather than flagsaver: every binary defines --workdir (and most --config),
so importing two of them into one test process is a DuplicateFlagError.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.pipeline_testlib import (ROOT, check_report_consistency,
                                    read_report, run_binary)

SMOKE = "--config=configs/quickstart.py:smoke"


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("bin") / "run")
    proc = run_binary("eb_train", SMOKE, f"--workdir={workdir}", "--config.verbose=1")
    return workdir, proc


def test_eb_train_exits_0_prints_the_summary_and_writes_a_consistent_report(quickstart_run):
    workdir, proc = quickstart_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EB Train summary (method=eb" in proc.stdout
    assert "Epoch 1/4" in proc.stdout  # Keras progress output
    report = read_report(workdir)
    assert report["eb"]["0.5"]["found"] in (True, False)
    assert {"search", "draw", "retrain"} <= set(report["phases"])
    check_report_consistency(workdir, report)


def test_mask_distance_writes_the_fig3_heatmap(quickstart_run, tmp_path):
    workdir, _ = quickstart_run
    out = str(tmp_path / "fig3.png")
    proc = run_binary("mask_distance", f"--workdir={workdir}", "--ratio=0.5", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    matrix = np.load(str(tmp_path / "fig3.npy"))
    epochs = read_report(workdir)["phases"]["search"]["epochs"]
    assert matrix.shape == (epochs, epochs)
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


def test_bad_config_value_is_a_usage_error_naming_the_field(tmp_path):
    workdir = str(tmp_path / "bad")
    proc = run_binary("eb_train", SMOKE, f"--workdir={workdir}", "--config.ratios=1.5")
    assert proc.returncode == 1
    assert "config.ratios=1.5 is invalid: must be in (0, 1)" in proc.stderr
    assert not os.path.exists(workdir)


def test_missing_config_file_fails_naming_it(tmp_path):
    proc = run_binary("eb_train", "--config=configs/nope.py", f"--workdir={tmp_path}/x")
    assert proc.returncode != 0
    assert "configs/nope.py" in proc.stderr
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.slow
def test_phase_binaries_on_one_workdir_equal_eb_train(quickstart_run, tmp_path):
    whole, _ = quickstart_run
    workdir = str(tmp_path / "phases")
    for args in (("eb_search", SMOKE, "--config.verbose=1"), ("eb_prune",), ("eb_retrain",)):
        proc = run_binary(*args, f"--workdir={workdir}")
        assert proc.returncode == 0, (args, proc.stderr[-3000:])
    a, b = read_report(whole), read_report(workdir)
    assert a["eb"] == b["eb"] and a["final"] == b["final"]
    assert a["ticket"]["0.5"]["per_layer"] == b["ticket"]["0.5"]["per_layer"]
    load = run_python(f"import eb_tf; t = eb_tf.load_ticket({workdir!r}); "
                             "print('params', t.model.count_params(), t.meta['epoch'])")
    assert load.returncode == 0, load.stderr[-3000:]
    assert f"params {b['final']['0.5']['params']} {b['eb']['0.5']['epoch']}" in load.stdout


def run_python(*args: str):
    """`python -c ...` in a fresh process from the project root."""
    return subprocess.run([sys.executable, "-c", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
def test_eb_train_on_mock_tfds_cifar10(tmp_path):
    workdir = str(tmp_path / "c10")
    code = ("import sys, tensorflow_datasets as tfds\n"
            "from absl import app\n"
            "from binaries import eb_train\n"
            "with tfds.testing.mock_data(num_examples=96):\n"
            "    app.run(eb_train.main, argv=sys.argv)\n")
    proc = run_python(code, SMOKE, f"--workdir={workdir}", "--config.dataset=cifar10",
                      "--config.model=vgg11", "--config.width=0.125",
                      "--config.train_subset=64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = read_report(workdir)
    assert report["phases"]["search"]["samples"] == 64 * report["phases"]["search"]["epochs"]
    check_report_consistency(workdir, report)
