"""The seam: which Keras a model belongs to, per model, and no side effect at import."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import eb_tf
from eb_tf import compat
from eb_tf.compat import keras, keras3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _models():
    k2 = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    k3 = keras3.Sequential([keras3.Input((3,)), keras3.layers.BatchNormalization()])
    return k2, k3


def test_keras_for_tells_the_two_kerases_apart_per_model():
    k2, k3 = _models()
    assert compat.keras_for(k2) is keras and compat.keras_for(k3) is keras3
    assert compat.check_model(k3, "f") is keras3 and compat.check_model(k2, "f") is keras
    assert (compat.keras_version(k2), compat.keras_version(k3)) == (2, 3)
    assert compat.keras_for(k3.layers[0]) is keras3            # layers too
    assert compat.is_keras3(k3) and not compat.is_keras3(k2)
    x = keras3.Input((4,))
    op = (x * 2.0)._keras_history[0]                           # keras.ops.multiply
    assert compat.is_keras3_operation(op) and not compat.is_keras3_operation(k3.layers[0])
    with pytest.raises(ValueError, match=r"^f expects a Keras model \(tf_keras or Keras 3\), "
                                         r"got builtins.str"):
        compat.check_model("vgg16", "f")


def test_both_kerases_work_in_one_process():
    k2, k3 = _models()
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(k2(x, training=False), k3(x, training=False), atol=1e-3)
    assert eb_tf.gammas(k2).keys() == {"batch_normalization"}
    assert list(eb_tf.gammas(k3)) == [k3.layers[0].name]


def test_tf_keras_only_features_refuse_a_keras3_model_in_one_line():
    _, k3 = _models()
    with pytest.raises(ValueError) as info:
        eb_tf.quantize_for_search(k3)
    message = str(info.value)
    assert "\n" not in message
    assert "got a Keras 3 model" in message and "tensorflow-model-optimization" in message
    assert "import tf_keras as keras" in message
    with pytest.raises(ValueError, match=r"got a Keras 3 model .*import tf_keras as keras"):
        eb_tf.prepare_for_precision(k3, "int8")


_IMPORT_SCRIPT = """
import json, os, sys
first = sys.argv[1]
import tensorflow as tf
if first == "tf.keras":
    before_cls = tf.keras.layers.Dense
env = dict(os.environ)
import eb_tf
model = eb_tf.models.build("convnet", 10, (16, 16, 1))
masks = eb_tf.channel_masks(model, 0.5)
import keras
print("RESULT " + json.dumps({
    "env_same": dict(os.environ) == env,
    "legacy": os.environ.get("TF_USE_LEGACY_KERAS"),
    "tf_keras_is_keras3": tf.keras.layers.Dense is keras.layers.Dense,
    "same_class": first != "tf.keras" or tf.keras.layers.Dense is before_cls}))
"""


@pytest.mark.parametrize("first", ["tf.keras", "eb_tf"])
def test_import_eb_tf_leaves_environ_and_tf_keras_unchanged(first):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    run = subprocess.run([sys.executable, "-c", _IMPORT_SCRIPT, first], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    assert json.loads(lines[-1][7:]) == {"env_same": True, "legacy": None,
                                         "tf_keras_is_keras3": True, "same_class": True}
