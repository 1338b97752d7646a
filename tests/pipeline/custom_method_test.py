"""Adding a method is one record: a toy method registered here runs in eb_train and eb_bench.

The toy, `eb_scratch`, searches like EB Train (stops when the ticket emerges) but
retrains the drawn ticket from a fresh initialisation for the whole budget T. Nothing
outside this file knows it: the pipeline, the config validation, the benchmark and its
report read its record.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eb_tf import bench, io_utils, pipeline
from eb_tf.pipeline import methods
from tests.pipeline_testlib import ROOT, load, smoke_config

T = 4  # the smoke budget

REGISTER = textwrap.dedent("""
    from eb_tf.pipeline import methods
    methods.register(methods.Method(
        "eb_scratch", "EB search, ticket retrained from a fresh init for T epochs",
        stops_at_ticket=True, retrain="reinit", formula="(t + r T) / T", marker="X"))
""")


@pytest.fixture(scope="module")
def eb_scratch():
    namespace = {}
    exec(REGISTER, namespace)  # pylint: disable=exec-used
    yield methods.get("eb_scratch")
    methods.unregister("eb_scratch")


def test_the_pipeline_runs_a_registered_method(eb_scratch, tmp_path):
    report = pipeline.run(smoke_config(method="eb_scratch"), str(tmp_path), print_summary=False)
    meta = io_utils.read_json(os.path.join(tmp_path, "tickets", "p0.5", "meta.json"))
    t = report["eb"]["0.5"]["epoch"]
    assert report["method"] == "eb_scratch" and 1 <= t <= T
    assert report["phases"]["search"]["epochs"] == t                 # stopped at the ticket
    assert meta["retrain_start_epoch"] == 0 and meta["epoch"] == t   # reinit: T epochs
    assert report["phases"]["retrain"]["by_ratio"]["0.5"]["epochs"] == T
    # reinit: the ticket starts from fresh weights, not from the search's epoch t
    drawn = load(os.path.join(tmp_path, "tickets", "p0.5", "model.keras"))
    searched = load(os.path.join(tmp_path, "search", "final.keras"))
    kernel = drawn.get_layer("conv1").get_weights()[0]
    dense_kernel = searched.get_layer("conv1").get_weights()[0]
    keep = np.load(os.path.join(tmp_path, "tickets", "p0.5", "mask.npz"))
    assert kernel.shape[-1] < dense_kernel.shape[-1] or not np.allclose(
        kernel, dense_kernel[..., keep[next(iter(keep.files))]])


def _run_with_toy(binary: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m binaries.<binary> args` in a fresh process that registers the toy first."""
    script = REGISTER + textwrap.dedent(f"""
        import runpy, sys
        sys.argv = [{binary!r}, *{list(args)!r}]
        runpy.run_module("binaries.{binary}", run_name="__main__")
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_eb_train_and_eb_bench_run_a_method_registered_before_them(tmp_path):
    """The binaries, in a fresh process that registers the toy first (as a plugin would)."""
    train, bench_dir = tmp_path / "train", tmp_path / "bench"
    _run_with_toy("eb_train", "--config=configs/quickstart.py:smoke",
                  "--config.method=eb_scratch", "--config.verbose=0",
                  "--config.tensorboard=False", f"--workdir={train}")
    proc = _run_with_toy("eb_bench", "--config=configs/bench_cifar10.py:smoke",
                         "--config.methods=dense,eb_scratch", f"--workdir={bench_dir}")
    report = io_utils.read_json(os.path.join(train, "report.json"))
    assert report["method"] == "eb_scratch" and "0.5" in report["final"]
    result = io_utils.read_json(os.path.join(bench_dir, "bench.json"))
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["dense", "eb_scratch"]
    row = rows["eb_scratch"]
    t, r = row["eb_epoch"], row["flops_ratio"]
    assert row["predicted_cost"] == pytest.approx((t + r * T) / T)
    assert row["epochs"] == t + T                      # search to t, retrain T epochs
    assert any(n.startswith("eb_scratch: EB search") and "(t + r T) / T" in n
               for n in result["notes"])
    assert "| eb_scratch | 0.5 |" in proc.stdout        # eb_bench prints its table


def test_bench_options_accept_registered_tokens_only_while_registered(eb_scratch):
    options = bench.BenchOptions(methods="eb_scratch,dense")
    assert options.methods == ("dense", "eb_scratch")  # baselines first
    methods.unregister("eb_scratch")
    try:
        with pytest.raises(ValueError, match=r"config.methods='eb_scratch' is invalid"):
            bench.BenchOptions(methods="eb_scratch")
    finally:
        methods.register(eb_scratch)
