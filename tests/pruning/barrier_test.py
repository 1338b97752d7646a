"""Barriers: layers the pruner cannot map keep their spaces whole; the rest is pruned."""
import warnings

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.pruning import pruner, testing

L = keras.layers


def _cbr(x, filters, name):
    return L.ReLU()(L.BatchNormalization(name=name)(
        L.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)))


class TwoHeads(L.Layer):
    """A custom layer with two outputs, one of them of unknown channels (a scalar)."""

    def call(self, x):
        return x * 2.0, tf.reduce_sum(x, axis=[1, 2, 3])


def _model(middle):
    inp = keras.Input((6, 6, 3))
    x = middle(_cbr(inp, 6, "bn1"))
    x = _cbr(x, 6, "bn2")
    return keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))


_M1 = np.array([1, 0, 1, 0, 0, 1], bool)
_M2 = np.array([1, 1, 0, 0, 1, 0], bool)


def _prune(model, masks):
    testing.randomize_bn(model, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = pruner.prune(model, masks)
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 3)).astype(np.float32)
    ref = pruner.apply_masks(model, masks)(x, training=False)
    assert testing.max_rel_error(ref, pruned(x, training=False)) <= 1e-4
    return pruned, [str(w.message) for w in caught if "barrier" in str(w.message)]


@pytest.mark.parametrize("middle, name, why", [
    (lambda x: L.Lambda(lambda t: t * 2.0, name="lam")(x), "lam",
     r"'lam' \(Lambda\) is not supported by the pruner \(it cannot tell how the layer maps "
     r"channels\)"),
    (lambda x: L.Permute((2, 1, 3), name="perm")(x), "perm", r"'perm' \(Permute\) is not"),
    (lambda x: L.LayerNormalization(name="ln")(x), "ln",
     r"'ln' \(LayerNormalization\) reads every channel"),
    (lambda x: L.Reshape((6, 3, 12), name="shuffle")(x), "shuffle",
     r"'shuffle' \(Reshape\) mixes channels \(last axis 6 -> 12\)"),
    (lambda x: TwoHeads(name="two")(x)[0], "two", r"'two' \(TwoHeads\) is not supported"),
])
def test_barrier_keeps_the_space_it_reads_prunes_the_rest_and_says_so(middle, name, why):
    model = _model(middle)
    pruned, notes = _prune(model, {"bn1": _M1, "bn2": _M2})
    assert pruned.get_layer("bn1_conv").filters == 6          # read by the barrier: whole
    assert pruned.get_layer("bn2_conv").filters == 3          # after it: pruned
    assert len(notes) == 1
    assert f"so it keeps the channels that masks 'bn1' drop" in notes[0]
    assert __import__("re").search(why, notes[0]), notes[0]
    report = eb_tf.summary(model, {"bn1": _M1, "bn2": _M2}, print_fn=None)
    assert [(r.key, r.frozen_by) for r in report.frozen] == [("bn1", name)]
    assert "frozen by" in report.table()
    if name != "ln":                    # a known barrier, not an unmapped layer
        with pytest.raises(ValueError, match=f"eb_tf.prune: layer '{name}'"):
            pruner.prune(model, {"bn1": _M1}, unknown="error")


def test_nested_model_called_twice_is_kept_whole_with_its_masks_applied():
    t_in = keras.Input((6, 6, 6))
    tower = keras.Model(t_in, _cbr(t_in, 6, "tbn"), name="tower")
    inp = keras.Input((6, 6, 3))
    a = _cbr(inp, 6, "bn1")
    x = L.Add()([tower(a), tower(_cbr(a, 6, "bn2"))])
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(_cbr(x, 6, "bn3"))))
    masks = {"bn1": _M1, "bn2": _M2, "bn3": _M2, "tower/tbn": _M1}
    pruned, notes = _prune(model, masks)
    assert pruned.get_layer("bn3_conv").filters == 3
    np.testing.assert_array_equal(pruned.get_layer("tower").get_layer("tbn").gamma.numpy() != 0,
                                  _M1 & (model.get_layer("tower").get_layer("tbn").gamma.numpy()
                                         != 0))
    assert "'tower' (Functional) is a nested model called 2 times" in notes[0]
    assert "'tower/tbn', 'bn1', 'bn2'" in notes[0]


class _Opaque(L.Layer):
    """A custom layer whose __init__ takes a function: no automatic config."""

    def __init__(self, fn, weighted=False, **kw):
        super().__init__(**kw)
        self.fn, self.weighted = fn, weighted

    def build(self, shape):
        if self.weighted:
            self.w = self.add_weight("w", shape=(), initializer="ones")

    def call(self, x):
        return self.fn(x) * (self.w if self.weighted else 1.0)


def test_stateless_barrier_without_a_config_is_reused_one_with_weights_is_an_error():
    layer = _Opaque(lambda t: t * 3.0, name="nc")
    model = _model(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = pruner.prune(model, {"bn1": _M1})
    assert pruned.get_layer("nc") is layer
    model = _model(_Opaque(lambda t: t * 3.0, weighted=True, name="nw"))
    with pytest.raises(ValueError, match=r"^eb_tf.prune: layer 'nw' \(_Opaque\) is a barrier "
                       r"with weights but cannot be rebuilt from its config \(NotImplemented"
                       r"Error: Layer _Opaque was created .*\); give it a get_config\(\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.prune(model, {"bn1": _M1})


def test_model_without_batchnorm_has_nothing_to_prune():
    inp = keras.Input((6, 6, 3))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Lambda(lambda t: t + 1)(inp))))
    with pytest.raises(ValueError, match=r"eb_tf.prune: model .* has no BatchNormalization "
                       r"layer, so there is nothing to prune"):
        pruner.prune(model, {})
    with pytest.raises(ValueError, match=r"eb_tf.channel_masks: model .* has no "
                       r"BatchNormalization layer"):
        eb_tf.channel_masks(model, 0.5)


def test_scale_false_bns_get_the_enable_scale_advice():
    inp = keras.Input((6, 6, 3))
    x = L.BatchNormalization(scale=False, name="bn")(L.Conv2D(4, 3)(inp))
    frozen = L.BatchNormalization(name="fz", trainable=False)(x)
    model = keras.Model(inp, frozen)
    with pytest.raises(ValueError, match=r"has 2 BatchNormalization layers but none is "
                       r"trainable with scale=True.*1 have scale=False \(no gamma, e.g. 'bn'\): "
                       r"turn it on with eb_tf.add_bn_l1\(model, enable_scale=True\); 1 are "
                       r"frozen \(trainable=False, e.g. 'fz'\)"):
        eb_tf.channel_masks(model, 0.5)
    with pytest.raises(ValueError, match="eb_tf.add_bn_l1: .*none is trainable"):
        eb_tf.add_bn_l1(model, enable_scale=False)
