"""eb_tf.baselines.contributions: the next layer of each BN and the sampled contributions."""
import numpy as np
import pytest

from eb_tf.baselines import contributions
from eb_tf.compat import keras

L = keras.layers


def _names(model):
    return {k: op and op.layer.name for k, op in contributions.next_layers(model).items()}


def test_next_layer_is_found_through_zero_preserving_per_channel_layers():
    x = keras.Input((8, 8, 3))
    h = L.BatchNormalization(name="bn1")(L.Conv2D(4, 3, name="c1")(x))
    h = L.MaxPooling2D()(L.Activation("relu")(h))
    h = L.BatchNormalization(name="bn2")(L.Conv2D(5, 1, name="c2")(L.Dropout(0.5)(h)))
    h = L.GlobalAveragePooling2D()(L.LeakyReLU()(h))
    model = keras.Model(x, L.Dense(3, name="head")(h))
    assert _names(model) == {"bn1": "c2", "bn2": "head"}


def test_bns_feeding_a_join_a_fork_a_depthwise_conv_or_a_sigmoid_have_none():
    x = keras.Input((8, 8, 4))
    a = L.BatchNormalization(name="into_add")(L.Conv2D(4, 1)(x))
    h = L.ReLU()(L.Add()([a, x]))
    b = L.ReLU()(L.BatchNormalization(name="fork")(L.Conv2D(4, 3, padding="same")(h)))
    h = L.Concatenate()([L.Conv2D(2, 1)(b), L.Conv2D(2, 1)(b)])
    c = L.BatchNormalization(name="to_depthwise")(L.Conv2D(4, 1)(h))
    h = L.DepthwiseConv2D(3, padding="same")(c)
    d = L.Activation("sigmoid")(L.BatchNormalization(name="to_sigmoid")(L.Conv2D(3, 1)(h)))
    e = L.BatchNormalization(name="output")(L.Conv2D(2, 1)(d))
    model = keras.Model(x, e)
    assert set(_names(model).values()) == {None}


@pytest.mark.parametrize("size, kernel, strides, dilation, padding", [
    (3, 3, 1, 1, "valid"),
    (2, 3, 2, 1, "same"),     # padding (0, 1): TF puts the odd pad after
    (5, 3, 1, 2, "valid"),    # dilated
    (1, 3, 1, 1, "same"),     # padding (1, 1)
])
def test_contributions_add_up_to_the_next_conv_output(size, kernel, strides, dilation,
                                                      padding):
    """One output position and filter: each sample is the conv output of one image, and
    each column the output with only that input channel left."""
    inputs = keras.Input((size, size, 3))
    h = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(4, 1, name="c1")(inputs)))
    out = L.Conv2D(1, kernel, strides, padding=padding, dilation_rate=dilation,
                   use_bias=True, bias_initializer="ones", name="c2")(h)
    model = keras.Model(inputs, out)
    assert out.shape[1:3] == (1, 1)
    x = np.random.default_rng(0).normal(size=(6, size, size, 3)).astype(np.float32)
    parts = contributions.sample(model, contributions.next_layers(model), [x], points=1)["bn"]
    act = keras.Model(inputs, h)(x).numpy()
    conv = model.get_layer("c2")
    np.testing.assert_allclose(parts.sum(axis=1) + 1.0, model(x).numpy()[:, 0, 0, 0],
                               rtol=1e-5, atol=1e-5)
    for c in range(4):
        only = np.zeros_like(act)
        only[..., c] = act[..., c]
        np.testing.assert_allclose(parts[:, c] + 1.0, conv(only).numpy()[:, 0, 0, 0],
                                   rtol=1e-5, atol=1e-5)


def test_dense_contributions_and_sample_counts():
    inputs = keras.Input((4, 4, 2))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization(name="bn")(L.Conv2D(3, 1)(inputs)))
    model = keras.Model(inputs, L.Dense(1, use_bias=False, name="head")(h))
    x = np.random.default_rng(1).normal(size=(5, 4, 4, 2)).astype(np.float32)
    parts = contributions.sample(model, contributions.next_layers(model), [x[:2], x[2:]],
                                 points=3, seed=4)["bn"]
    assert parts.shape == (15, 3)
    np.testing.assert_allclose(parts.sum(axis=1), np.repeat(model(x).numpy()[:, 0], 3),
                               rtol=1e-5)


def test_sample_refuses_bad_points_and_no_images():
    inputs = keras.Input((4, 4, 2))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization(name="bn")(L.Conv2D(3, 1)(inputs)))
    model = keras.Model(inputs, L.Dense(2)(h))
    nxt = contributions.next_layers(model)
    with pytest.raises(ValueError, match="points=0 must be an int >= 1"):
        contributions.sample(model, nxt, [np.zeros((1, 4, 4, 2))], points=0)
    with pytest.raises(ValueError, match="images is empty"):
        contributions.sample(model, nxt, [], points=2)
