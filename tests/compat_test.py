"""Tests for eb_tf.compat: one Keras, and a clear error for Keras 3 models."""
import os
import subprocess
import sys

import pytest

from eb_tf import compat
from eb_tf.compat import keras


def test_keras_is_tf_keras():
    assert keras.__name__.startswith("tf_keras")
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    assert compat.check_tf_keras_model(model) is model


def test_keras3_model_is_rejected_with_a_hint():
    import keras as keras3  # Keras 3, only to build the bad input.
    model = keras3.Sequential([keras3.layers.Input((3,)), keras3.layers.Dense(2)])
    assert compat.is_keras3_object(model)
    with pytest.raises(ValueError, match=r"my_fn got a Keras 3 model.*import tf_keras"):
        compat.check_tf_keras_model(model, "my_fn")


def test_non_model_is_rejected():
    with pytest.raises(ValueError, match=r"expects a tf_keras.Model, got builtins.str"):
        compat.check_tf_keras_model("vgg16")


@pytest.mark.parametrize("first", ["import tensorflow as tf; tf.keras.layers", "pass"])
def test_compat_works_whether_or_not_tensorflow_came_first(first):
    code = (f"{first}\nfrom eb_tf.compat import keras\n"
            "import tensorflow_model_optimization as tfmot\n"
            "m = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])\n"
            "q = tfmot.quantization.keras.quantize_model(m)\n"
            "print(type(q).__module__)")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip().startswith("tf_keras")
