"""Tests for eb_tf.pipeline.run_lock and the run folder's failed-start rules."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from eb_tf import io_utils, pipeline
from eb_tf.pipeline import run_dir, run_lock
from tests.pipeline_testlib import ROOT, check_report_consistency, read_report, smoke_config

HOLD = textwrap.dedent("""
    import sys, time
    from eb_tf.pipeline import run_lock
    with run_lock.hold(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def _wait_for(predicate, seconds=120.0):
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_second_holder_is_refused_with_the_first_ones_identity(tmp_path):
    with run_lock.hold(str(tmp_path / "run")) as folder:
        who = run_lock.holder(folder)
        assert who["pid"] == os.getpid() and who["host"] and who["started"]
        with pytest.raises(run_lock.RunFolderLocked,
                           match=rf"is in use by another eb_tf run \(PID {os.getpid()} on "):
            with run_lock.hold(folder):
                pass
    with run_lock.hold(folder):  # released on exit
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    folder = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, folder], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(run_lock.RunFolderLocked, match=f"PID {proc.pid} "):
            with run_lock.hold(folder):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with run_lock.hold(folder):  # the kernel released it: nothing to clean up
        assert run_lock.holder(folder)["pid"] == os.getpid()


def test_an_unused_folder_is_removed_and_a_file_in_the_way_is_named(tmp_path):
    folder = tmp_path / "never_used"
    with run_lock.hold(str(folder)):
        assert sorted(os.listdir(folder)) == [run_lock.LOCK_FILE]
    assert not folder.exists()   # created here, still empty: gone again
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"cannot be a run folder: Not a directory"):
        with run_lock.hold(str(tmp_path / "file" / "run")):
            pass


def test_two_runs_on_one_folder_one_is_refused_the_other_intact(tmp_path):
    workdir = str(tmp_path / "run")
    first = subprocess.Popen(
        [sys.executable, "-m", "binaries.eb_train", "--config=configs/quickstart.py:smoke",
         "--config.verbose=0", "--config.tensorboard=False", f"--workdir={workdir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        assert _wait_for(lambda: run_lock.holder(workdir).get("pid") == first.pid)
        with pytest.raises(run_lock.RunFolderLocked, match=f"PID {first.pid} "):
            pipeline.run(smoke_config(), workdir, print_summary=False)
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    report = read_report(workdir)
    assert report["eb"]["0.5"]["found"] and "0.5" in report["final"]
    check_report_consistency(workdir, report)


def test_a_failed_start_leaves_nothing_and_the_fixed_config_runs(tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match="nonexistent.npz"):
        pipeline.run(smoke_config(dataset=f"npz:{tmp_path}/nonexistent.npz"), workdir,
                     print_summary=False)
    assert not os.path.exists(workdir)
    report = pipeline.run(smoke_config(), workdir, print_summary=False)
    assert "0.5" in report["final"]


def test_a_folder_with_no_completed_epoch_restarts_with_another_config(tmp_path):
    workdir = str(tmp_path / "run")
    stale = pipeline.from_config_dict(smoke_config(lr=0.5))
    rd = run_dir.RunDir.open(workdir, stale)       # identity written, no epoch trained
    io_utils.atomic_write_bytes(rd.search_dir("weights_e0.h5"), b"partial")
    assert not rd.has_progress()
    fresh = pipeline.from_config_dict(smoke_config())
    reopened = run_dir.RunDir.open(workdir, fresh)
    saved = io_utils.read_json(os.path.join(workdir, "config.json"))
    assert saved["config_hash"] == reopened.hash != rd.hash
    assert not os.path.exists(rd.search_dir("weights_e0.h5"))


def test_a_folder_with_a_completed_epoch_keeps_refusing_another_config(tmp_path):
    workdir = str(tmp_path / "run")
    rd = run_dir.RunDir.open(workdir, pipeline.from_config_dict(smoke_config()))
    os.makedirs(rd.search_dir("ckpt"))
    with open(rd.search_dir("ckpt", "state.json"), "w") as f:
        json.dump({"epoch": 1}, f)
    assert rd.has_progress()
    with pytest.raises(ValueError, match=r"holds a run with another config \(config.lr: "):
        run_dir.RunDir.open(workdir, pipeline.from_config_dict(smoke_config(lr=0.5)))


def test_an_empty_workdir_is_refused_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--workdir is empty: name a run folder"):
        pipeline.run(smoke_config(), "", print_summary=False)
    with pytest.raises(ValueError, match="--workdir is empty"):
        run_dir.RunDir.open(" ", pipeline.from_config_dict(smoke_config()))
    assert os.listdir(tmp_path) == []
