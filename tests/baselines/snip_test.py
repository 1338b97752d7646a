"""eb_tf.baselines.snip: channel-level SNIP scores (vs finite differences), masks, tickets."""
import warnings

import numpy as np
import pytest

import eb_tf
from eb_tf.baselines import snip
from eb_tf.compat import keras, tf
from eb_tf.pruning import testing

L = keras.layers


class Gate(L.Layer):
    """y = m * x with one gate per channel, m = 1: SNIP's gate made explicit."""

    def build(self, shape):
        self.m = self.add_weight("m", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.m


def _toy(gated):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    h = L.BatchNormalization(name="bn1", beta_initializer="random_normal")(
        L.Conv2D(4, 3, name="conv1")(inputs))
    h = L.ReLU()(Gate(name="gate1")(h) if gated else h)
    h = L.BatchNormalization(name="bn2", gamma_initializer="random_uniform")(
        L.Conv2D(3, 3, name="conv2")(h))
    h = L.ReLU()(Gate(name="gate2")(h) if gated else h)
    return keras.Model(inputs, L.Dense(5, name="head")(L.GlobalAveragePooling2D()(h)))


@pytest.fixture
def float64():
    keras.backend.set_floatx("float64")
    yield
    keras.backend.set_floatx("float32")


def test_scores_equal_a_finite_difference_estimate_on_a_toy_net(float64):
    plain, gated = _toy(False), _toy(True)
    for layer in plain.layers:
        if layer.weights:
            gated.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(8, 6, 6, 2)), rng.integers(0, 5, 8)) for _ in range(3)]
    scores = snip.channel_scores(plain, batches)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eps = 1e-5
    for key, gate in (("bn1", "gate1"), ("bn2", "gate2")):
        m = gated.get_layer(gate).m
        estimate = np.zeros(m.shape[0])
        for c in range(m.shape[0]):
            for x, y in batches:
                values = []
                for sign in (1, -1):
                    m.assign(tf.one_hot(c, m.shape[0], dtype=m.dtype) * sign * eps + 1.0)
                    values.append(float(loss(y, gated(x, training=True))))
                estimate[c] += abs(values[0] - values[1]) / (2 * eps)
            m.assign(tf.ones_like(m))
        np.testing.assert_allclose(scores[key], estimate, rtol=1e-6, atol=1e-9)
        assert np.all(estimate > 0)


def test_scoring_leaves_the_model_unchanged():
    model = _toy(False)
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(1).normal(size=(8, 6, 6, 2)).astype(np.float32)
    snip.channel_scores(model, [(x, np.arange(8) % 5)] * 2)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)      # BN moving statistics restored too


def test_masks_prune_the_lowest_scores_globally_with_min_channels():
    model = _toy(False)
    x = np.random.default_rng(2).normal(size=(16, 6, 6, 2)).astype(np.float32)
    batches = [(x[:8], np.arange(8) % 5), (x[8:], np.arange(8) % 5)]
    result = snip.snip_masks(model, 0.5, batches)
    scores = np.concatenate([result.scores["bn1"], result.scores["bn2"]])
    kept = np.concatenate([result.masks["bn1"], result.masks["bn2"]])
    assert result.samples == 16 and kept.sum() == 7 - 3        # floor(0.5 * 7) pruned
    assert scores[kept].min() >= scores[~kept].max()
    floor = snip.snip_masks(model, 0.9, batches, min_channels=2)
    assert all(m.sum() >= 2 for m in floor.masks.values())


@pytest.mark.parametrize("seed", range(6))
def test_tickets_of_random_graphs_are_exact(seed):
    model, _ = testing.random_model(seed, blocks=4)
    x = np.random.default_rng(seed).normal(size=(16, 8, 8, 3)).astype(np.float32)
    masks = snip.snip_masks(model, 0.5, [(x, np.arange(16) % 3)]).masks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a dead branch pruned away is a warning
        ticket = eb_tf.prune(model, masks)
    assert testing.max_rel_error(eb_tf.apply_masks(model, masks)(x), ticket(x)) <= 1e-4


def test_bad_input_is_named():
    no_bn = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    with pytest.raises(ValueError, match="has no trainable BatchNormalization layer"):
        snip.channel_scores(no_bn, [(np.zeros((1, 3)), np.zeros(1))])
    with pytest.raises(ValueError, match="batches is empty"):
        snip.channel_scores(_toy(False), [])
    with pytest.raises(ValueError, match="ratio"):
        snip.snip_masks(_toy(False), 1.5, [])
