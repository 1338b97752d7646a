"""prune on every tf_keras.applications family with BatchNormalization.

Each family's smallest variant (weights=None, classifier_activation=None) goes through
`add_bn_l1` (which turns on `scale` where it is off), random BN statistics, gammas
shaped like a trained slimming net (`set_realistic_gammas`) with >= 5% exact zeros, and
a global p = 0.5 mask. The pruned model must match `apply_masks` (max|a - b| / max|b|
<= 1e-4), be smaller in parameters and FLOPs and, in the slow test, reload from
`.keras` in a fresh process and run as float32 TFLite within 1e-4.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import eb_tf
from eb_tf import io_utils
from eb_tf.bench.step_time import set_realistic_gammas
from eb_tf.compat import keras
from eb_tf.export.litert import LiteRTModel
from eb_tf.pruning import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A = keras.applications
# family -> (smallest variant, input side)
FAMILIES = {
    "ResNet": (A.ResNet50, 64), "ResNetV2": (A.ResNet50V2, 64),
    "ResNetRS": (A.resnet_rs.ResNetRS50, 64), "DenseNet": (A.DenseNet121, 64),
    "MobileNet": (A.MobileNet, 64), "MobileNetV2": (A.MobileNetV2, 64),
    "MobileNetV3": (A.MobileNetV3Small, 64), "EfficientNet": (A.EfficientNetB0, 64),
    "EfficientNetV2": (A.EfficientNetV2B0, 64), "NASNet": (A.NASNetMobile, 64),
    "Xception": (A.Xception, 71), "InceptionV3": (A.InceptionV3, 75),
    "InceptionResNetV2": (A.InceptionResNetV2, 75), "RegNetX": (A.regnet.RegNetX002, 64),
    "RegNetY": (A.regnet.RegNetY002, 64),
}
FAST = ("MobileNetV3", "RegNetY", "InceptionV3")   # TF ops + Rescaling, groups + SE, scale=False
_ZEROS = 0.06


def _searched(family, seed=0):
    """The family's smallest model, as an L1 search would leave it."""
    builder, side = FAMILIES[family]
    model = builder(weights=None, input_shape=(side, side, 3), classes=10,
                    classifier_activation=None)
    model = eb_tf.add_bn_l1(model)
    testing.randomize_bn(model, seed)
    set_realistic_gammas(model, seed)
    rng = np.random.default_rng(seed)
    for ref in eb_tf.bn_layers(model):
        gamma = ref.gamma.numpy()
        gamma[rng.random(gamma.size) < _ZEROS] = 0.0
        ref.gamma.assign(gamma)
    x = rng.uniform(0, 255, (2, side, side, 3)).astype(np.float32)
    return model, x


def _pruned_exactly(family, ratio=0.5):
    model, x = _searched(family)
    masks = eb_tf.channel_masks(model, ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no barrier: every layer is mapped
        pruned = eb_tf.prune(model, masks)
    ref = eb_tf.apply_masks(model, masks)(x, training=False).numpy()
    out = pruned(x, training=False).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-4, family
    assert pruned.count_params() < model.count_params()
    assert eb_tf.count_flops(pruned).total < eb_tf.count_flops(model).total
    return pruned, x, out


@pytest.mark.parametrize("family", FAST)
def test_prune_is_exact_on_three_families(family):
    _pruned_exactly(family)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_prune_exact_smaller_reloads_and_runs_as_tflite(family, tmp_path):
    pruned, x, out = _pruned_exactly(family)
    path, xpath = str(tmp_path / "ticket.keras"), str(tmp_path / "x.npy")
    io_utils.atomic_save_model(pruned, path)
    np.save(xpath, x)
    code = ("import sys, numpy as np, eb_tf; from eb_tf.compat import keras; "
            "m = keras.models.load_model(sys.argv[1]); "
            "np.save(sys.argv[2] + '.out.npy', m(np.load(sys.argv[2]), training=False).numpy())")
    run = subprocess.run([sys.executable, "-c", code, path, xpath], cwd=ROOT,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
                         text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    reloaded = np.load(xpath + ".out.npy")
    assert np.abs(reloaded - out).max() / np.abs(out).max() <= 1e-5
    lite = LiteRTModel(eb_tf.convert_tflite(pruned, "float32"))
    got = lite(x)
    assert np.abs(got - out).max() / np.abs(out).max() <= 1e-4
