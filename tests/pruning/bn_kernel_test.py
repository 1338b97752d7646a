"""bn_kernel: BatchNormalizations switched to the unfused kernel, the same function."""
import numpy as np
import pytest

from eb_tf.compat import keras, keras3, tf
from eb_tf.pruning import bn_kernel
from eb_tf.pruning import testing

L = keras.layers


def _net():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(13, 3, padding="same", name="conv0")(inp)
    x = L.ReLU()(L.BatchNormalization(name="bn0")(x))
    x = L.Conv2D(16, 3, padding="same", name="conv1")(x)
    x = L.ReLU()(L.BatchNormalization(name="bn1")(x))
    model = keras.Model(inp, L.Dense(4, name="fc")(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, seed=2)
    return model


def test_unfuse_switches_the_named_bns_and_keeps_the_function_and_weights():
    model = _net()
    new = bn_kernel.unfuse(model, ["bn0"])
    assert type(new.get_layer("bn0")) is bn_kernel.UnfusedBatchNormalization
    assert new.get_layer("bn0").fused is False and new.get_layer("bn1").fused is not False
    assert type(new.get_layer("bn1")) is L.BatchNormalization
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), new.get_weights()))
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(model(x, training=training), new(x, training=training),
                                   rtol=1e-4, atol=1e-5)
    # the same gradients too: the unfused kernel trains the same network
    grads = []
    for m in (model, new):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(x, training=True) ** 2)
        grads.append(tape.gradient(loss, m.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert bn_kernel.unfuse(model, []) is model


def test_an_unfused_bn_survives_saving_and_prunes_like_a_bn(tmp_path):
    import eb_tf  # pylint: disable=import-outside-toplevel
    new = bn_kernel.unfuse(_net(), ["bn0", "bn1"])
    new.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(l).__name__ for l in loaded.layers if "bn" in l.name] == \
        ["UnfusedBatchNormalization"] * 2 and loaded.get_layer("bn0").fused is False
    masks = eb_tf.channel_masks(loaded, 0.5)
    assert sorted(masks) == ["bn0", "bn1"]
    ticket = eb_tf.prune(loaded, masks)
    assert type(ticket.get_layer("bn0")) is bn_kernel.UnfusedBatchNormalization
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype(np.float32)
    assert testing.max_rel_error(eb_tf.apply_masks(loaded, masks)(x), ticket(x)) <= 1e-4


def test_only_tf_keras_bns_can_be_unfused_and_a_wrong_name_is_named():
    model = _net()
    assert bn_kernel.can_unfuse(model.get_layer("bn0"))
    assert not bn_kernel.can_unfuse(model.get_layer("conv0"))
    assert not bn_kernel.can_unfuse(keras3.layers.BatchNormalization())
    assert not bn_kernel.can_unfuse(L.BatchNormalization(renorm=True))
    assert not bn_kernel.can_unfuse(L.BatchNormalization(synchronized=True))
    with pytest.raises(ValueError, match=r"unfuse: 'conv0' is not a tf_keras BatchNormalization "
                                         r"of model 'model.*' whose kernel can be chosen"):
        bn_kernel.unfuse(model, ["conv0"])
    with pytest.raises(ValueError, match=r"'nope' is not"):
        bn_kernel.unfuse(model, ["nope"])
