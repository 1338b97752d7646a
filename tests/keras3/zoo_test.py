"""The zoo and keras.applications families, built in Keras 3: pruned exactly and smaller.

The same checks as tests/pruning/pruner_test.py (zoo) and applications_test.py (three
fast families; every other Keras 3 family with BatchNormalization in the slow test) on
the Keras 3 builds: `eb_tf.models.build(..., keras_version=3)` and Keras 3's
`keras.applications` (which has no RegNet and no ResNetRS).
"""
import warnings

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras3
from eb_tf.pruning import testing
from tests.pruning_testlib import mask_in_place as _mask_in_place


def _exact(model, masks, x, quiet=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if quiet else "error")    # no barrier expected
        pruned = eb_tf.prune(model, masks)
    out = np.asarray(pruned(x, training=False))
    ref = np.asarray(_mask_in_place(model, masks)(x, training=False))
    assert np.abs(out - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4
    assert eb_tf.count_flops(pruned).total < eb_tf.count_flops(model).total
    assert pruned.count_params() < model.count_params()
    return pruned


@pytest.mark.parametrize("name, width", [("vgg16", 0.25), ("preresnet20_basic", 0.5),
                                         ("resnet18", 0.125)])
def test_keras3_zoo_models_build_like_tf_keras_and_prune_exactly(name, width):
    model = eb_tf.models.build(name, 10, (32, 32, 3), width=width, keras_version=3)
    assert type(model).__module__.startswith("keras.")
    twin = eb_tf.models.build(name, 10, (32, 32, 3), width=width)
    assert model.count_params() == twin.count_params()
    assert eb_tf.count_flops(model).per_layer == eb_tf.count_flops(twin).per_layer
    testing.randomize_bn(model, 4)
    masks = testing.random_masks(model, 4)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    pruned = _exact(model, masks, x)
    assert eb_tf.count_flops(pruned).total < 0.8 * eb_tf.count_flops(model).total


def test_models_build_rejects_a_bad_keras_version():
    with pytest.raises(ValueError, match=r"keras_version must be 2 \(tf_keras\) or 3 "
                                         r"\(Keras 3, TensorFlow backend\), got 4"):
        eb_tf.models.build("convnet", 10, (16, 16, 1), keras_version=4)


A = keras3.applications
FAMILIES = {"MobileNetV2": (lambda **kw: A.MobileNetV2(alpha=0.35, **kw), 32),
            "MobileNetV3": (A.MobileNetV3Small, 64), "InceptionV3": (A.InceptionV3, 75)}


def _prune_application(builder, side):
    model = eb_tf.add_bn_l1(builder(weights=None, input_shape=(side, side, 3), classes=10,
                                    classifier_activation=None))
    testing.randomize_bn(model, 0)
    masks = eb_tf.channel_masks(model, 0.5)
    x = np.random.default_rng(0).uniform(0, 255, (2, side, side, 3)).astype(np.float32)
    _exact(model, masks, x)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_keras3_applications_prune_exactly(family):
    _prune_application(*FAMILIES[family])


SLOW_FAMILIES = {
    "MobileNet": (A.MobileNet, 64), "EfficientNet": (A.EfficientNetB0, 64),
    "EfficientNetV2": (A.EfficientNetV2B0, 64), "ResNet": (A.ResNet50, 64),
    "ResNetV2": (A.ResNet50V2, 64), "DenseNet": (A.DenseNet121, 64),
    "NASNet": (A.NASNetMobile, 64), "Xception": (A.Xception, 71),
    "InceptionResNetV2": (A.InceptionResNetV2, 75)}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(SLOW_FAMILIES))
def test_keras3_application_families_prune_exactly(family):
    _prune_application(*SLOW_FAMILIES[family])
