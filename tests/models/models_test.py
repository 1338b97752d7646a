"""Tests of eb_tf.models: pinned parameter counts, one train step each, the registry."""
import math
import re
import sys
import textwrap

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.models import common

# name, num_classes, small input for the train step, (total, trainable) parameters.
# The counts do not depend on the input's height/width (global average pooling), so
# each model is built once, at full width on a small input: counted, then trained.
# Keras counts BN moving statistics as (non-trainable) parameters; PyTorch's
# `parameters()` equals the trainable count (torchvision ResNet-18 11,689,512,
# ResNet-50 25,557,032; network-slimming PreResNet-164 1.70M).
PINNED = [
    ("vgg11", 10, (32, 32, 3), 9_233_866, 9_228_362),
    ("vgg13", 10, (32, 32, 3), 9_418_954, 9_413_066),
    ("vgg16", 10, (32, 32, 3), 14_732_490, 14_724_042),
    ("vgg19", 100, (32, 32, 3), 20_092_196, 20_081_188),
    ("preresnet56", 10, (8, 8, 3), 598_522, 590_426),
    ("preresnet101", 100, (8, 8, 3), 1_092_052, 1_077_236),
    ("preresnet164", 10, (8, 8, 3), 1_727_482, 1_703_258),
    ("preresnet20_basic", 10, (8, 8, 3), 273_658, 272_282),
    ("preresnet56_basic", 10, (8, 8, 3), 859_642, 855_578),
    ("resnet18", 1000, (32, 32, 3), 11_699_112, 11_689_512),
    ("resnet50", 1000, (32, 32, 3), 25_610_152, 25_557_032),
    ("convnet", 10, (16, 16, 1), 73_114, 72_666),
    ("keras:MobileNetV2", 1000, (32, 32, 3), 3_538_984, 3_504_872),
]


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _one_eager_step(model, num_classes, batch=2):
    """One SGD step, eagerly (no graph tracing: fast for 500-layer models)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch,) + model.input_shape[1:]), tf.float32)
    y = tf.constant(rng.integers(0, num_classes, size=batch), tf.int32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    weights = model.trainable_weights
    before = [w.numpy().copy() for w in weights]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(y, logits)
    grads = tape.gradient(loss, weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, weights))
    return logits, float(loss), grads, before


@pytest.mark.parametrize("name,num_classes,shape,total,trainable", PINNED,
                         ids=[p[0] for p in PINNED])
def test_zoo_model_has_pinned_count_and_trains_one_step(name, num_classes, shape, total,
                                                        trainable):
    model = eb_tf.models.build(name, num_classes, shape)
    assert (model.count_params(), _trainable(model)) == (total, trainable)
    logits, loss, grads, before = _one_eager_step(model, num_classes)
    assert logits.shape == (2, num_classes)
    assert math.isfinite(loss)
    assert all(g is not None for g in grads)
    fc = model.layers[-1].trainable_weights[0]
    index = [w.name for w in model.trainable_weights].index(fc.name)
    assert not np.allclose(before[index], fc.numpy())


def test_vgg16_width_quarter_scales_every_conv():
    model = eb_tf.models.build("vgg16", 10, (32, 32, 3), width=0.25)
    widths = [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert widths == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.get_layer("fc").kernel.shape == (128, 10)
    assert model.count_params() == 925_242
    assert eb_tf.models.build("vgg16", 10, (32, 32, 3), width=0.3).get_layer("conv1").filters == 19


@hypothesis.given(st.integers(1, 2048), st.floats(0.01, 4.0))
def test_width_rounds_half_up_and_keeps_one_channel(channels, width):
    n = common.scaled(channels, width)
    assert n >= 1
    assert n == max(1, math.floor(channels * width + 0.5))
    assert abs(n - channels * width) <= 0.5 or n == 1


def test_vgg_init_and_pooling_match_the_reference():
    model = eb_tf.models.build("vgg16", 10, (32, 32, 3))
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 13
    assert all(np.all(b.gamma.numpy() == 0.5) and np.all(b.beta.numpy() == 0) for b in bns)
    assert bns[0].epsilon == 1e-5 and bns[0].momentum == 0.9
    conv = model.get_layer("conv13")           # 3*3*512*512 weights, std sqrt(2 / (9 * 512))
    assert not conv.use_bias
    assert conv.kernel.numpy().std() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    fc = model.get_layer("fc")
    assert fc.kernel.numpy().std() == pytest.approx(0.01, rel=0.1)
    assert np.all(fc.bias.numpy() == 0)
    # nn.AvgPool2d(2) + flatten on the 2x2 map of a 32x32 input == global average pooling.
    features = keras.Model(model.input, model.get_layer("relu13").output)
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    maps = features(x, training=False)
    assert maps.shape == (3, 2, 2, 512)
    reference = keras.layers.Flatten()(keras.layers.AveragePooling2D(2)(maps))
    np.testing.assert_allclose(model.get_layer("avgpool")(maps), reference, rtol=1e-6)


def test_preresnet_layout_is_preactivation_bottleneck():
    model = eb_tf.models.build("preresnet56", 10, (32, 32, 3), width=0.5)   # n = 6
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 3 * 6 * 3 + 1           # three per block, plus the final BN
    downsample = [l.name for l in model.layers if l.name.endswith("_downsample")]
    assert downsample == ["stage1_block1_downsample", "stage2_block1_downsample",
                          "stage3_block1_downsample"]
    # Pre-activation: a block's first BN reads the previous block's sum.
    assert model.get_layer("stage1_block2_bn1").input is model.get_layer("stage1_block1_add").output
    assert model.get_layer("stage3_block6_conv3").filters == 128    # 64 * 4 * 0.5
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("fc").kernel.shape == (128, 10)


def test_resnet_convs_have_no_bias_and_accept_any_input_size():
    model = eb_tf.models.build("resnet18", 7, (72, 40, 3))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 20 and not any(c.use_bias for c in convs)
    assert model(np.zeros((1, 72, 40, 3), np.float32)).shape == (1, 7)
    assert model.get_layer("layer4_block2_out").output.shape[1:] == (3, 2, 512)


@pytest.mark.parametrize("name,needle", [
    ("preresnet57", "9n+2"), ("preresnet57_basic", "6n+2"), ("vgg17", "Unknown model"),
    ("alexnet", "Unknown model"), ("keras:NoSuchNet", "keras:MobileNetV2")])
def test_unknown_or_malformed_names_raise_listing_the_known_ones(name, needle):
    with pytest.raises(ValueError, match=re.escape(needle)) as info:
        eb_tf.models.build(name, 10, (32, 32, 3))
    if needle == "Unknown model":
        assert "vgg16" in str(info.value) and "preresnet164" in str(info.value)
        assert "package.module:function" in str(info.value)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(width=0), "width must be a number > 0"), (dict(num_classes=0), "num_classes"),
    (dict(input_shape=(32, 32)), "input_shape must be"),
    (dict(input_shape=(8, 8, 3)), "too small for 4 max-pools; height and width must be at least"),
    (dict(name="keras:ResNet50", width=0.5), "only the MobileNets")])
def test_bad_arguments_raise_value_errors(kwargs, needle):
    args = dict(name="vgg11", num_classes=10, input_shape=(32, 32, 3), width=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        eb_tf.models.build(**args)


def test_keras_application_by_lowercase_name_with_alpha():
    model = eb_tf.models.build("mobilenetv2", 10, (32, 32, 3), width=0.35)
    assert model.count_params() == 423_018
    assert model.layers[-1].activation is keras.activations.linear     # logits
    assert "keras:MobileNetV2" in eb_tf.models.names()
    assert {"vgg16", "preresnet164", "resnet50", "convnet"} <= set(eb_tf.models.names())


def test_user_builder_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(textwrap.dedent("""
        from eb_tf.compat import keras
        def tiny(num_classes, input_shape, width=1.0, hidden=4):
            x = keras.Input(input_shape)
            h = keras.layers.Conv2D(int(hidden * width), 3)(x)
            y = keras.layers.Dense(num_classes)(keras.layers.GlobalAveragePooling2D()(h))
            return keras.Model(x, y, name="tiny")
        def not_a_model(num_classes, input_shape, width=1.0):
            return "nope"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = eb_tf.models.build("my_nets:tiny", 3, (8, 8, 1), width=2.0, hidden=5)
    assert model.name == "tiny" and model.output_shape == (None, 3)
    assert model.layers[1].filters == 10
    with pytest.raises(ValueError, match="expects a tf_keras.Model"):
        eb_tf.models.build("my_nets:not_a_model", 3, (8, 8, 1))
    with pytest.raises(ValueError, match="has no callable 'missing'"):
        eb_tf.models.build("my_nets:missing", 3, (8, 8, 1))
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.nets'"):
        eb_tf.models.build("no_such_pkg.nets:tiny", 3, (8, 8, 1))
    sys.modules.pop("my_nets", None)


def test_convnet_fits_the_embedded_digits():
    splits = eb_tf.data.load("digits", batch_size=32, train_subset=96)
    model = eb_tf.models.build("convnet", splits.num_classes, splits.input_shape)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(splits.train_epochs(0, 2), epochs=2,
                        steps_per_epoch=splits.steps_per_epoch, verbose=0)
    assert splits.steps_per_epoch == 3
    assert len(history.history["loss"]) == 2
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert int(model.optimizer.iterations) == 6
