"""prune through the layers real Keras 3 architectures use: exact, smaller, sliced right."""
import warnings

import numpy as np
import pytest

from eb_tf.compat import keras3
from eb_tf.pruning import pruner, testing

L = keras3.layers


def _cbr(x, filters, name, **kw):
    return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=name)(
        L.Conv2D(filters, kw.pop("kernel", 3), padding="same", name=f"{name}_conv", **kw)(x)))


def _prune_exact(model, masks, seed=0):
    testing.randomize_bn(model, seed)
    x = np.random.default_rng(seed).normal(size=(3,) + tuple(model.input_shape[1:]))
    x = x.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # every layer is mapped
        pruned = pruner.prune(model, masks)
    ref = pruner.apply_masks(model, masks)(x, training=False)
    out = pruned(x, training=False)
    assert out.shape == ref.shape and testing.max_rel_error(ref, out) <= 1e-4
    return pruned


def test_keras3_per_channel_rescaling_and_normalization_are_sliced():
    inp = keras3.Input((6, 6, 3))
    x = _cbr(inp, 6, "bn1")
    x = L.Rescaling(np.linspace(0.5, 2.0, 6).tolist(), offset=np.arange(6.0).tolist(),
                    name="resc")(x)
    fixed = L.Normalization(mean=np.arange(6.0) / 10, variance=np.ones(6) * 2, name="fixed")
    x = _cbr(fixed(x), 4, "bn2", kernel=1)
    model = keras3.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    masks = {"bn1": np.array([1, 0, 1, 1, 0, 1], bool), "bn2": np.ones(4, bool)}
    pruned = _prune_exact(model, masks)
    keep = [0, 2, 3, 5]
    assert pruned.get_layer("resc").get_config()["scale"] == pytest.approx(
        np.linspace(0.5, 2.0, 6)[keep])
    assert pruned.get_layer("bn1_conv").filters == 4


@pytest.mark.parametrize("groups", [2, 8])
def test_keras3_grouped_and_depthwise_convs(groups):
    inp = keras3.Input((8, 8, 3))
    x = _cbr(inp, 8, "bn1")
    x = L.Conv2D(8, 3, padding="same", groups=groups, use_bias=False, name="grouped")(x)
    x = L.ReLU()(L.BatchNormalization(name="bn2")(x))
    x = L.DepthwiseConv2D(3, padding="same", use_bias=True, name="dw")(x)
    x = _cbr(L.ReLU()(L.BatchNormalization(name="bn3")(x)), 4, "bn4", kernel=1)
    model = keras3.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    keep = {"bn1": [0, 2, 3, 5, 6], "bn2": [0, 2, 3, 5], "bn3": [0, 3, 5, 7], "bn4": [0, 2]}
    masks = {k: np.isin(np.arange(8 if k != "bn4" else 4), v) for k, v in keep.items()}
    pruned = _prune_exact(model, masks, seed=1)
    assert pruned.get_layer("dw").kernel.shape[2] == pruned.get_layer("bn3").gamma.shape[0]
    assert pruned.count_params() < model.count_params()


@pytest.mark.parametrize("make", [
    lambda x: L.ZeroPadding2D(1)(L.Cropping2D(1)(x)),
    lambda x: L.UpSampling2D(2)(L.AveragePooling2D(2, padding="same")(x)),
    lambda x: L.SpatialDropout2D(0.3)(L.Dropout(0.2)(L.Activation("swish")(x))),
    lambda x: L.PReLU(shared_axes=[1, 2])(x),
    lambda x: keras3.ops.hard_silu(keras3.ops.leaky_relu(x, 0.1)) / 6.0 - 1.0,
])
def test_keras3_spatial_per_channel_layers_and_ops_prune_exactly(make):
    inp = keras3.Input((8, 8, 3))
    x = make(_cbr(inp, 6, "bn1"))
    model = keras3.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    pruned = _prune_exact(model, {"bn1": np.array([1, 0, 1, 0, 0, 1], bool)})
    assert pruned.get_layer("bn1_conv").filters == 3


def test_keras3_concatenate_and_squeeze_excite_gate():
    inp = keras3.Input((8, 8, 3))
    a = _cbr(inp, 4, "bn_a")
    b = _cbr(a, 3, "bn_b")
    x = L.Concatenate(name="cat")([a, b])
    s = L.Dense(7, activation="sigmoid", name="se")(L.GlobalAveragePooling2D()(x))
    x = x * L.Reshape((1, 1, 7))(s)                       # a keras.ops Multiply gate
    model = keras3.Model(inp, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(x)))
    masks = {"bn_a": np.array([1, 0, 1, 1], bool), "bn_b": np.array([0, 1, 1], bool)}
    pruned = _prune_exact(model, masks)
    assert pruned.get_layer("se").units == 5 and pruned.get_layer("fc").kernel.shape == (5, 2)
