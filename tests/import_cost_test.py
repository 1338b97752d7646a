"""`import eb_tf` stays cheap: optional heavy packages load on first use, never at import.

"Loads nothing" means nothing beyond what a bare `import tensorflow` loads in the same
environment: TensorFlow 2.21 itself pulls in Keras 3 and, through it, matplotlib.

Each scenario runs in a fresh interpreter (TF_USE_LEGACY_KERAS removed from its
environment), since this pytest process has long since imported everything. The public
names of the package are pinned in tests/public_names.json (taken before the restructure
into sub-packages) so that no name silently disappears.
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("keras_tuner", "tensorflow_model_optimization", "matplotlib")
LAZY_NAMES = ("quantize_for_search", "strip_quantization", "quantize_scope", "tune", "EBTuner",
              "TuneConfig", "TuneResult", "tuning", "bench")

# Runs in the child: prints one line `RESULT <json>` with the heavy and Keras modules that
# are loaded after each step.
_SCRIPT = """
import json, os, sys, tempfile
def loaded():
    return sorted(m for m in sys.modules if m.startswith(("keras",) + %(heavy)r))
out = {}
import eb_tf
out["import"] = loaded()
out["legacy_env"] = os.environ.get("TF_USE_LEGACY_KERAS")
eb_tf.bench
out["bench"] = loaded()
result = {"rows": [{"method": "dense", "flops": 1.0, "test_acc": 0.5, "ratio": None}],
          "config": {"model": "convnet", "width": 1.0, "dataset": "digits", "epochs": 1}}
eb_tf.bench.report.plot(result, os.path.join(tempfile.mkdtemp(), "plot.png"))
out["plot"] = loaded()
eb_tf.quantize_for_search
out["quantize_for_search"] = loaded()
eb_tf.tune
out["tune"] = loaded()
print("RESULT " + json.dumps(out))
""" % {"heavy": HEAVY}


def _run_fresh(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def steps():
    return _run_fresh(_SCRIPT)


@pytest.fixture(scope="module")
def tensorflow_modules():
    """The Keras and heavy modules a bare `import tensorflow` loads (TF 2.21: Keras 3 and,
    through keras.src.visualization, matplotlib)."""
    out = _run_fresh("import sys, json, tensorflow\n"
                     "print('RESULT ' + json.dumps(sorted(m for m in sys.modules "
                     f"if m.startswith(('keras',) + {HEAVY!r}))))")
    return set(out)


def _of(modules, package):
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def _new(modules, baseline, package):
    return [m for m in _of(modules, package) if m not in baseline]


@pytest.mark.parametrize("package", HEAVY)
def test_import_eb_tf_loads_no_optional_heavy_package(steps, tensorflow_modules, package):
    extra = _new(steps["import"], tensorflow_modules, package)
    assert not extra, (
        f"`import eb_tf` loads {extra[:5]}, which a bare `import tensorflow` does not; import "
        f"{package} inside the function that needs it (or via a lazy name of eb_tf/__init__.py).")


def test_import_eb_tf_loads_no_keras3_beyond_bare_tensorflow(steps, tensorflow_modules):
    extra = [m for m in steps["import"] if m.startswith("keras") and m.split(".")[0] not in HEAVY
             and m not in tensorflow_modules]
    assert not extra, (f"`import eb_tf` loads Keras 3 modules that `import tensorflow` does not: "
                       f"{extra[:10]}; use `from eb_tf.compat import keras` (tf_keras) instead.")


def test_import_eb_tf_leaves_tf_use_legacy_keras_unset(steps):
    assert steps["legacy_env"] is None, (
        f"`import eb_tf` set TF_USE_LEGACY_KERAS={steps['legacy_env']!r}; something imports "
        "tensorflow_model_optimization (which sets it) at import time.")


@pytest.mark.parametrize("step, loads, before", [
    ("quantize_for_search", "tensorflow_model_optimization", "plot"),
    ("tune", "keras_tuner", "quantize_for_search"),
])
def test_lazy_names_load_their_package_on_first_use(steps, step, loads, before):
    assert not _of(steps[before], loads), f"{loads} was loaded before `eb_tf.{step}` was used."
    assert _of(steps[step], loads), f"`eb_tf.{step}` did not load {loads}."


def test_bench_loads_matplotlib_and_tfmot_only_to_plot_or_train(steps, tensorflow_modules):
    for package in ("matplotlib", "tensorflow_model_optimization"):
        extra = _new(steps["bench"], tensorflow_modules, package)
        assert not extra, (
            f"`eb_tf.bench` loads {extra[:5]} on import; import {package} inside the function "
            "that needs it (eb_tf/bench/report.py plot, eb_tf/bench/tfmot_baseline.py).")
    assert "matplotlib.pyplot" in steps["plot"], "eb_tf.bench.report.plot drew without pyplot?"


def test_dir_and_all_list_the_lazy_names():
    import eb_tf  # pylint: disable=import-outside-toplevel
    for listing, where in ((dir(eb_tf), "dir(eb_tf)"), (eb_tf.__all__, "eb_tf.__all__")):
        missing = sorted(set(LAZY_NAMES) - set(listing))
        assert not missing, (f"{where} lacks the lazy names {missing}; list them in "
                             "eb_tf/__init__.py.")


with open(os.path.join(ROOT, "tests", "public_names.json")) as _f:
    PUBLIC_NAMES = json.load(_f)


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_public_names_of_before_the_restructure_still_resolve(module):
    mod = importlib.import_module(module)
    missing = []
    for name in PUBLIC_NAMES[module]:
        try:
            getattr(mod, name)
        except Exception as e:  # pylint: disable=broad-except  (AttributeError, ImportError...)
            missing.append(f"{name} ({type(e).__name__}: {e})")
    assert not missing, (f"{module} lost public names {missing}; re-export them from "
                         f"{module.replace('.', '/')}/__init__.py.")
