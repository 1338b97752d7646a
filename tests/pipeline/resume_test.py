"""Resume: a killed search or retrain continues from its last epoch to the same result.

The fast tests interrupt in-process (an exception right after the checkpoint of epoch
2); the slow ones SIGKILL a real `python -m binaries.*` subprocess and run the same
command again.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from eb_tf.pipeline import runner, trainer
from tests.pipeline_testlib import ROOT, load, read_report, same_weights, smoke_config


class Killed(Exception):
    pass


def _crash_after_epoch(monkeypatch, epoch):
    original = trainer.EpochCheckpoint.save

    def save(self, e):
        original(self, e)
        if e == epoch:
            raise Killed(f"killed after the checkpoint of epoch {e}")
    monkeypatch.setattr(trainer.EpochCheckpoint, "save", save)


def _same_search(a: str, b: str):
    ra, rb = read_report(a), read_report(b)
    assert ra["eb"] == rb["eb"]
    for name in ("mask.npz",):
        with np.load(os.path.join(a, "search", "eb", "p0.5", name)) as x, \
                np.load(os.path.join(b, "search", "eb", "p0.5", name)) as y:
            assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    ha = trainer.read_mask_history(os.path.join(a, "search", "masks", "p0.5.npz"))
    hb = trainer.read_mask_history(os.path.join(b, "search", "masks", "p0.5.npz"))
    assert list(ha["epochs"]) == list(hb["epochs"])
    np.testing.assert_array_equal(ha["masks"], hb["masks"])
    assert same_weights(load(os.path.join(a, "search", "final.keras")),
                        load(os.path.join(b, "search", "final.keras")))


def test_interrupted_search_resumes_to_the_same_ticket(tmp_path, monkeypatch):
    cfg = smoke_config()
    runner.run(cfg, str(tmp_path / "whole"), phases=("search",), print_summary=False)
    _crash_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        runner.run(cfg, str(tmp_path / "cut"), phases=("search",), print_summary=False)
    state = json.loads((tmp_path / "cut" / "search" / "ckpt" / "state.json").read_text())
    assert state["epoch"] == 2 and not read_report(str(tmp_path / "cut"))["phases"]
    monkeypatch.undo()
    report = runner.run(cfg, str(tmp_path / "cut"), phases=("search",),
                           print_summary=False)
    assert report["eb"]["0.5"]["found"]
    _same_search(str(tmp_path / "whole"), str(tmp_path / "cut"))
    # The fit clock's state travels in the checkpoint: both sessions' steps are counted.
    whole = read_report(str(tmp_path / "whole"))["phases"]["search"]
    cut = report["phases"]["search"]
    assert cut["timing"]["steps"] == whole["timing"]["steps"] > 0
    assert whole["timing"]["steps"] % whole["epochs"] == 0


@pytest.mark.slow
def test_interrupted_retrain_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = smoke_config(retrain="reinit")  # retrain runs epochs 0..3: room to interrupt
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    runner.run(cfg, whole, phases=("search", "draw"), print_summary=False)
    shutil.copytree(whole, cut)
    final = runner.run(cfg, whole, phases=("retrain",), print_summary=False)["final"]
    _crash_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        runner.run(cfg, cut, phases=("retrain",), print_summary=False)
    monkeypatch.undo()
    resumed = runner.run(cfg, cut, phases=("retrain",), print_summary=False)
    assert resumed["final"] == final
    assert resumed["phases"]["retrain"]["epochs"] == 4
    assert same_weights(load(os.path.join(whole, "retrain", "p0.5", "final.keras")),
                        load(os.path.join(cut, "retrain", "p0.5", "final.keras")))


# ------------------------------------------------------------------ real SIGKILL
_SLOW_FLAGS = ("--config=configs/quickstart.py", "--config.epochs=10",
               "--config.train_subset=256", "--config.batch_size=32", "--config.width=0.25",
               "--config.eval_batches=2", "--config.verbose=0", "--config.tensorboard=False")


def _kill_when(cmd, state_file, min_epoch, timeout=400):
    """Starts `cmd`, SIGKILLs it once `state_file` records epoch >= min_epoch."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                with open(state_file) as f:
                    if json.load(f)["epoch"] >= min_epoch:
                        break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    with open(state_file) as f:
        return json.load(f)["epoch"]


def _binary(name, *args):
    return [sys.executable, "-m", f"binaries.{name}", *args]


@pytest.mark.slow
def test_sigkilled_search_subprocess_resumes_to_the_same_ticket(tmp_path):
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    flags = _SLOW_FLAGS + ("--config.keep_training=True",)
    subprocess.run(_binary("eb_search", *flags, f"--workdir={whole}"), cwd=ROOT, check=True,
                   capture_output=True)
    killed_at = _kill_when(_binary("eb_search", *flags, f"--workdir={cut}"),
                           os.path.join(cut, "search", "ckpt", "state.json"), 2)
    assert killed_at < 10 and "search" not in read_report(cut)["phases"]
    for path in ("report.json", "config.json", "search/ckpt/state.json"):
        json.loads(open(os.path.join(cut, path)).read())  # complete, parseable
    subprocess.run(_binary("eb_search", *flags, f"--workdir={cut}"), cwd=ROOT, check=True,
                   capture_output=True)
    _same_search(whole, cut)
    assert not [d for d, dirs, _ in os.walk(cut) for x in dirs if x.startswith(".tmp-")]


@pytest.mark.slow
def test_sigkilled_retrain_subprocess_resumes_to_the_same_weights(tmp_path):
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    flags = _SLOW_FLAGS + ("--config.retrain=reinit",)
    subprocess.run(_binary("eb_search", *flags, f"--workdir={whole}"), cwd=ROOT, check=True,
                   capture_output=True)
    subprocess.run(_binary("eb_prune", f"--workdir={whole}"), cwd=ROOT, check=True,
                   capture_output=True)
    shutil.copytree(whole, cut)
    subprocess.run(_binary("eb_retrain", f"--workdir={whole}"), cwd=ROOT, check=True,
                   capture_output=True)
    killed_at = _kill_when(_binary("eb_retrain", f"--workdir={cut}"),
                           os.path.join(cut, "retrain", "p0.5", "ckpt", "state.json"), 2)
    assert killed_at < 10
    subprocess.run(_binary("eb_retrain", f"--workdir={cut}"), cwd=ROOT, check=True,
                   capture_output=True)
    assert read_report(cut)["final"] == read_report(whole)["final"]
    assert same_weights(load(os.path.join(whole, "retrain", "p0.5", "final.keras")),
                        load(os.path.join(cut, "retrain", "p0.5", "final.keras")))
