"""Keras 3 models in the sparsity API: BN discovery, L1 and decay, masks, EarlyBird."""
import json
import os

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras3

L = keras3.layers


def _net(name="k3net"):
    inp = keras3.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(inp)
    x = L.ReLU()(L.BatchNormalization(name="bn1")(x))
    inner_in = keras3.Input((8, 8, 4))
    y = L.BatchNormalization(name="bn2")(L.Conv2D(6, 1, name="c2")(inner_in))
    inner = keras3.Model(inner_in, L.ReLU()(y), name="block")
    x = inner(x) * 2.0 + 1.0                     # keras.ops calls between layers
    out = L.Dense(3, name="fc")(L.GlobalAveragePooling2D()(x))
    return keras3.Model(inp, out, name=name)


def test_bn_layers_gammas_and_masks_of_a_nested_keras3_model():
    model = _net()
    refs = eb_tf.bn_layers(model)
    assert [(r.key, r.path) for r in refs] == [("bn1", ()), ("block/bn2", ("block",))]
    model.get_layer("bn1").gamma.assign(np.array([0.1, 0.9, 0.2, 0.8], np.float32))
    gammas = eb_tf.gammas(model)
    np.testing.assert_allclose(gammas["bn1"], [0.1, 0.9, 0.2, 0.8])
    assert gammas["block/bn2"].shape == (6,)
    masks = eb_tf.channel_masks(model, 0.2)          # the 2 smallest of 10 gammas
    np.testing.assert_array_equal(masks["bn1"], [False, True, False, True])
    assert masks["block/bn2"].all()
    model.get_layer("bn1").gamma.assign(np.array([np.nan, 1, 1, 1], np.float32))
    with pytest.raises(ValueError, match=r"BN layer 'bn1' has non-finite gammas"):
        eb_tf.gammas(model)


def test_add_bn_l1_and_weight_decay_regularise_a_keras3_model_and_survive_saving(tmp_path):
    model = _net()
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    before = model(x, training=False)
    reg = eb_tf.add_weight_decay(eb_tf.add_bn_l1(model, strength=1e-3), weight_decay=2e-4)
    assert type(reg).__module__.startswith("keras.")
    np.testing.assert_allclose(reg(x, training=False), before, atol=1e-6)   # weights copied
    bn = reg.get_layer("bn1")
    assert bn.gamma_regularizer.get_config() == pytest.approx({"l1": 1e-3, "l2": 1e-4})
    assert reg.get_layer("fc").kernel_regularizer.get_config() == pytest.approx({"l2": 1e-4})
    inner_bn = reg.get_layer("block").get_layer("bn2")
    assert inner_bn.gamma_regularizer.get_config()["l1"] == pytest.approx(1e-3)
    reg(x)                                          # the penalties are in the losses
    gamma_l1 = sum(1e-3 * np.abs(r.gamma.numpy()).sum() for r in eb_tf.bn_layers(reg))
    assert float(sum(reg.losses)) > gamma_l1
    again = eb_tf.add_bn_l1(reg, strength=1e-3)     # idempotent: L1 replaced, not doubled
    assert again.get_layer("bn1").gamma_regularizer.get_config() == pytest.approx(
        {"l1": 1e-3, "l2": 1e-4})
    path = str(tmp_path / "reg.keras")
    reg.save(path)
    loaded = keras3.models.load_model(path)
    assert loaded.get_layer("bn1").gamma_regularizer.get_config()["l1"] == pytest.approx(1e-3)


def test_add_bn_l1_turns_scale_on_for_keras3_bn_without_gamma():
    inp = keras3.Input((4, 4, 2))
    out = L.BatchNormalization(scale=False, name="bn")(L.Conv2D(3, 1, name="c")(inp))
    model = keras3.Model(inp, out)
    on = eb_tf.add_bn_l1(model)
    assert on.get_layer("bn").scale and on.get_layer("bn").gamma.numpy().tolist() == [1, 1, 1]
    np.testing.assert_array_equal(on.get_layer("bn").moving_variance.numpy(),
                                  model.get_layer("bn").moving_variance.numpy())


def test_early_bird_hooks_on_a_keras3_model_save_a_loadable_ticket(tmp_path):
    model = _net()
    eb = eb_tf.EarlyBird(ratios=(0.5,), window=2, threshold=0.5, save_dir=str(tmp_path))
    eb.set_model(model)
    eb.on_train_begin()
    logs = {}
    eb.on_epoch_end(0, logs)
    assert np.isnan(logs["eb_distance_p0.5"])
    eb.on_epoch_end(1, logs)
    assert logs["eb_distance_p0.5"] == 0.0 and eb.found_epochs == {0.5: 2}
    assert model.stop_training
    folder = tmp_path / "p0.5"
    assert sorted(os.listdir(folder)) == ["mask.npz", "meta.json", "weights.weights.h5"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["weights_file"] == "weights.weights.h5" and meta["epoch"] == 2
    twin = _net("twin")
    twin.load_weights(str(folder / "weights.weights.h5"))
    for a, b in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    state = json.loads(json.dumps(eb.get_state()))
    resumed = eb_tf.EarlyBird(ratios=(0.5,), window=2, threshold=0.5)
    resumed.set_state(state)
    assert resumed.found_epochs == {0.5: 2}
    np.testing.assert_array_equal(resumed.tickets[0.5]["bn1"], eb.tickets[0.5]["bn1"])


def test_sync_batchnorm_of_a_keras3_model_survives_clone_prune_and_saving(tmp_path):
    model = _net()
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype(np.float32)
    synced = eb_tf.sync_batchnorm(model)
    bns = [r.layer for r in eb_tf.bn_layers(synced)]
    assert [b.synchronized for b in bns] == [True, True]
    np.testing.assert_allclose(synced(x, training=False), model(x, training=False), atol=1e-5)
    regularised = eb_tf.add_bn_l1(synced)
    pruned = eb_tf.prune(regularised, eb_tf.channel_masks(regularised, 0.3))
    path = str(tmp_path / "synced.keras")
    pruned.save(path)
    loaded = keras3.models.load_model(path)
    assert [r.layer.synchronized for r in eb_tf.bn_layers(loaded)] == [True, True]
    assert eb_tf.sync_batchnorm(loaded) is loaded          # nothing left to convert
