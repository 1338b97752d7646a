"""Shared helpers of the pipeline tests (train_lib, binaries, resume): tiny configs, checks."""
import os
import subprocess
import sys

import numpy as np

import eb_tf
from eb_tf import io_utils
from eb_tf.compat import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def smoke_config(**overrides):
    """configs/quickstart.py:smoke (digits, convnet, 4 epochs, window 2), quiet."""
    from configs import quickstart
    cfg = quickstart.get_config("smoke")
    cfg.verbose = 0
    cfg.tensorboard = False
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def load(path):
    return eb_tf.load_ticket(path).model


def check_report_consistency(workdir: str, report: dict):
    """Recomputes every FLOPs figure of the report from the models saved in `workdir`."""
    search = report["phases"]["search"]
    dense = load(os.path.join(workdir, "search", "final.keras"))
    assert search["forward_flops_per_sample"] == eb_tf.count_flops(dense).total
    assert search["flops"] == 3 * search["forward_flops_per_sample"] * search["samples"]
    for name, final in report["final"].items():
        model = load(os.path.join(workdir, final["model"]))
        assert final["flops"] == eb_tf.count_flops(model).total, name
        assert final["params"] == eb_tf.count_params(model).total, name
        assert 0.0 <= final["test"] <= 1.0
        if name in report.get("ticket", {}):
            ticket = report["ticket"][name]
            drawn = load(os.path.join(workdir, "tickets", f"p{name}", "model.keras"))
            assert ticket["flops"] == eb_tf.count_flops(drawn).total == final["flops"]
            assert ticket["per_layer"] == eb_tf.count_flops(drawn).per_layer
            assert ticket["flops"] < ticket["dense_flops"] == search["forward_flops_per_sample"]
            retrain = report["phases"]["retrain"]["by_ratio"][name]
            assert retrain["flops"] == 3 * ticket["flops"] * retrain["samples"]
    leftovers = [os.path.join(d, f) for d, dirs, files in os.walk(workdir)
                 for f in dirs + files if f.startswith((".tmp-", ".old-"))]
    assert not leftovers, leftovers


def same_weights(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def run_binary(name: str, *args: str, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m binaries.<name> args...` from the project root; output captured."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", f"binaries.{name}", *args], cwd=ROOT,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def read_report(workdir: str) -> dict:
    return io_utils.read_json(os.path.join(workdir, "report.json"))


__all__ = ["ROOT", "smoke_config", "check_report_consistency", "same_weights",
           "run_binary", "read_report", "load", "keras"]
