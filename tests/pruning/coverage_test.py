"""prune through the layers real architectures use: exact, smaller, sliced right."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.pruning import dispatch, graph, pruner, testing

L = keras.layers


def _cbr(x, filters, name, **kw):
    return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=name)(
        L.Conv2D(filters, kw.pop("kernel", 3), padding="same", name=f"{name}_conv", **kw)(x)))


def _masks(model, keep=0.5, seed=0):
    masks = testing.random_masks(model, seed=seed, keep=keep, min_keep=1)
    return masks


def _prune_exact(model, masks, seed=0, quiet=True):
    """prune(model, masks), checked against apply_masks on random data (rel <= 1e-4)."""
    testing.randomize_bn(model, seed)
    x = np.random.default_rng(seed).normal(size=(3,) + tuple(model.input_shape[1:]))
    x = x.astype(np.float32)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        pruned = pruner.prune(model, masks)
    ref = pruner.apply_masks(model, masks)(x, training=False)
    out = pruned(x, training=False)
    assert out.shape == ref.shape
    assert testing.max_rel_error(ref, out) <= 1e-4
    return pruned


def _layer(model, cls):
    return next(l for l in model.layers if type(l) is cls)  # pylint: disable=unidiomatic-typecheck


def test_per_channel_rescaling_and_normalization_are_sliced():
    inp = keras.Input((6, 6, 3))
    x = _cbr(inp, 6, "bn1")
    x = L.Rescaling(np.linspace(0.5, 2.0, 6).tolist(), offset=np.arange(6.0).tolist(),
                    name="resc")(x)
    norm = L.Normalization(axis=-1, name="norm")
    norm.adapt(np.random.default_rng(1).normal(size=(16, 6, 6, 6)).astype(np.float32))
    x = norm(x)
    fixed = L.Normalization(mean=np.arange(6.0) / 10, variance=np.ones(6) * 2, name="fixed")
    x = _cbr(fixed(x), 4, "bn2", kernel=1)   # dropped channels: constants in its bias
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    masks = {"bn1": np.array([1, 0, 1, 1, 0, 1], bool), "bn2": np.ones(4, bool)}
    pruned = _prune_exact(model, masks)
    keep = [0, 2, 3, 5]
    assert _layer(pruned, L.Rescaling).get_config()["scale"] == pytest.approx(
        np.linspace(0.5, 2.0, 6)[keep])
    assert _layer(pruned, L.Rescaling).get_config()["offset"] == pytest.approx(
        np.arange(6.0)[keep])
    new_norm = pruned.get_layer("norm")
    np.testing.assert_allclose(new_norm.adapt_mean.numpy(), norm.adapt_mean.numpy()[keep])
    assert pruned.get_layer("fixed").get_config()["mean"] == pytest.approx(
        (np.arange(6.0) / 10)[keep])
    assert pruned.get_layer("bn1_conv").filters == 4


def test_scalar_rescaling_at_the_input_keeps_the_input():
    inp = keras.Input((6, 6, 3))
    x = L.Rescaling(1 / 255.0, offset=-0.5)(inp)
    model = keras.Model(inp, L.GlobalAveragePooling2D()(_cbr(x, 6, "bn1")))
    pruned = _prune_exact(model, {"bn1": np.array([1, 0, 1, 0, 0, 1], bool)})
    assert pruned.output_shape == (None, 6) and pruned.get_layer("bn1_conv").filters == 6


def test_tf_ops_hard_swish_scalar_and_per_channel_constants():
    inp = keras.Input((6, 6, 3))
    x = _cbr(inp, 6, "bn1")
    x = L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])      # MobileNetV3 hard-swish
    x = tf.nn.relu6(x) - 1.0
    x = x * tf.constant(np.linspace(-1, 1, 6), tf.float32) + np.arange(6, dtype=np.float32)
    x = tf.math.maximum(x, [0.5, -1.0, 0.0, 2.0, 0.1, -0.3])       # a Python list operand
    x = _cbr(x, 4, "bn2", kernel=1)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    kinds = {op.layer.name: dispatch.resolve(op, graph.build(model)).kind
             for op in graph.build(model).ops if dispatch.tf_op_name(op.layer)}
    assert set(kinds.values()) == {"unary"} and len(kinds) == 7
    pruned = _prune_exact(model, {"bn1": np.array([1, 1, 0, 1, 0, 0], bool),
                                  "bn2": np.ones(4, bool)})
    assert pruned.get_layer("bn1_conv").filters == 3


def test_tf_op_constant_that_is_not_zero_preserving_keeps_or_folds_channels():
    """sigmoid(0) = 0.5: a dropped channel is a constant, folded into the 1x1 conv."""
    inp = keras.Input((6, 6, 3))
    x = tf.math.sigmoid(_cbr(inp, 6, "bn1"))
    model = keras.Model(inp, L.GlobalAveragePooling2D()(_cbr(x, 4, "bn2", kernel=1)))
    pruned = _prune_exact(model, {"bn1": np.array([1, 0, 1, 0, 1, 0], bool),
                                  "bn2": np.ones(4, bool)})
    assert pruned.get_layer("bn1_conv").filters == 3
    assert pruned.get_layer("bn2_conv").use_bias


def test_tf_op_joins_residual_add_and_squeeze_excite_multiply():
    inp = keras.Input((6, 6, 8))
    a = _cbr(inp, 8, "bn1")
    b = _cbr(a, 8, "bn2")
    se = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(b))
    se = tf.math.sigmoid(L.Conv2D(8, 1, name="se")(L.Conv2D(2, 1, activation="relu")(se)))
    x = a + b * se                                                   # RegNetY's block
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(_cbr(x, 4, "bn3"))))
    g = graph.build(model)
    joins = [op for op in g.ops if dispatch.tf_op_name(op.layer) in ("add", "multiply")]
    assert [dispatch.resolve(op, g).kind for op in joins] == ["join", "join"]
    masks = {"bn1": np.array([1, 1, 0, 0, 1, 0, 0, 0], bool),
             "bn2": np.array([1, 0, 0, 1, 0, 1, 0, 0], bool), "bn3": np.ones(4, bool)}
    pruned = _prune_exact(model, masks)
    assert pruned.get_layer("bn1_conv").filters == 5          # the residual group: union
    assert pruned.get_layer("se").filters == 5


def _grouped_model(groups, filters=12):
    inp = keras.Input((6, 6, 4))
    x = _cbr(inp, 12, "bn1", kernel=1)
    x = _cbr(x, filters, "bn2", groups=groups)
    return keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(_cbr(x, 4, "bn3"))))


def test_grouped_conv_keeps_equal_groups_chosen_by_gamma():
    model = _grouped_model(groups=3)
    testing.randomize_bn(model, 0)
    gamma = model.get_layer("bn1").gamma.numpy()
    m1 = np.zeros(12, bool)
    m1[[0, 1, 2, 4]] = True                 # groups of 4: keeps 3, 1 and 0 channels
    m2 = np.zeros(12, bool)
    m2[[0, 4, 5, 8, 9, 10, 11]] = True      # output groups: 1, 2 and 4 channels
    pruned = _prune_exact(model, {"bn1": m1, "bn2": m2, "bn3": np.ones(4, bool)})
    conv = pruned.get_layer("bn2_conv")
    assert conv.groups == 3 and conv.filters == 12 and conv.kernel.shape[-2] == 3
    assert pruned.get_layer("bn1_conv").filters == 9
    # which original channels bn1 kept: match its moving means
    means = model.get_layer("bn1").moving_mean.numpy()
    kept = sorted(int(np.flatnonzero(means == v)[0])
                  for v in pruned.get_layer("bn1").moving_mean.numpy())
    top = lambda idle, k: sorted(idle[np.argsort(-np.abs(gamma[idle]))[:k]].tolist())
    assert kept == [0, 1, 2, 4] + top(np.array([5, 6, 7]), 2) + top(np.arange(8, 12), 3)
    # the revived channels stay masked (gamma 0), so the result is exact
    assert np.count_nonzero(pruned.get_layer("bn1").gamma.numpy()) == 4


def test_grouped_conv_with_one_channel_per_group_is_depthwise():
    model = _grouped_model(groups=12)
    g = graph.build(model)
    op = next(op for op in g.ops if op.layer.name == "bn2_conv")
    assert dispatch.resolve(op, g) is eb_tf.pruning.handlers.DEPTHWISE_CONV
    m1 = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1], bool)
    pruned = _prune_exact(model, {"bn1": m1, "bn2": m1, "bn3": np.ones(4, bool)})
    conv = pruned.get_layer("bn2_conv")
    assert conv.groups == conv.filters == 6
    np.testing.assert_array_equal(conv.kernel.numpy(),
                                  model.get_layer("bn2_conv").kernel.numpy()[..., m1])


def test_grouped_conv_in_a_dead_residual_branch_keeps_equal_groups():
    inp = keras.Input((6, 6, 6))
    x = _cbr(inp, 6, "bn1")
    y = L.BatchNormalization(name="bn2")(L.Conv2D(6, 3, padding="same", groups=3,
                                                  name="g")(x))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(L.Add()([x, y]))))
    masks = {"bn1": np.array([1, 0, 1, 1, 0, 1], bool), "bn2": np.zeros(6, bool)}
    with pytest.warns(UserWarning, match="the block becomes the identity"):
        pruned = _prune_exact(model, masks, quiet=False)
    # the Add makes g's output and bn1's one space: bn1 keeps 1, 2 and 1 of the pairs
    # (0, 1), (2, 3), (4, 5), so every group of g keeps 2
    assert pruned.get_layer("g").filters == 6 and pruned.get_layer("g").groups == 3
    assert pruned.get_layer("g").kernel.shape[-2] == 1      # 1 input kept per group


@pytest.mark.parametrize("make", [
    lambda x: L.Conv2DTranspose(6, 3, strides=2, padding="same", name="t")(x),
    lambda x: L.UpSampling2D(2)(x),
    lambda x: L.Cropping2D(1)(x),
    lambda x: L.Conv2D(6, 3, dilation_rate=2, padding="same", name="d")(x),
    lambda x: L.Conv2D(6, 3, strides=2, name="s")(x),
    lambda x: L.ZeroPadding2D(1)(L.Conv2D(6, 1, strides=2, name="s1")(x)),
])
def test_spatial_layers_prune_exactly(make):
    inp = keras.Input((8, 8, 3))
    x = make(_cbr(inp, 6, "bn1"))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(_cbr(x, 4, "bn2"))))
    pruned = _prune_exact(model, {"bn1": np.array([1, 0, 0, 1, 1, 0], bool),
                                  "bn2": np.array([1, 1, 0, 1], bool)})
    assert pruned.get_layer("bn1_conv").filters == 3
    assert pruned.count_params() < model.count_params()


def test_custom_scale_layer_is_a_residual_join():
    inp = keras.Input((6, 6, 6))
    a = _cbr(inp, 6, "bn1")
    b = _cbr(a, 6, "bn2")
    x = eb_tf.compat.CustomScaleLayer(0.17)([a, b])
    model = keras.Model(inp, L.GlobalAveragePooling2D()(_cbr(x, 4, "bn3")))
    masks = {"bn1": np.array([1, 1, 0, 0, 0, 0], bool),
             "bn2": np.array([0, 1, 1, 0, 0, 0], bool), "bn3": np.ones(4, bool)}
    pruned = _prune_exact(model, masks)
    assert pruned.get_layer("bn1_conv").filters == 3


def test_registered_custom_layer_handler_slices_its_weights():
    class ChannelScale(L.Layer):
        def build(self, shape):
            self.scale = self.add_weight("scale", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    eb_tf.pruning.handlers.register(ChannelScale, eb_tf.pruning.handlers.Handler(
        "unary", channel_weights=(("scale", 0),), stateful=True))
    try:
        inp = keras.Input((6, 6, 3))
        layer = ChannelScale(name="cs")
        x = layer(_cbr(inp, 6, "bn1"))
        layer.scale.assign(np.arange(1.0, 7.0))
        model = keras.Model(inp, L.GlobalAveragePooling2D()(_cbr(x, 4, "bn2")))
        m1 = np.array([0, 1, 1, 0, 1, 0], bool)
        with keras.utils.custom_object_scope({"ChannelScale": ChannelScale}):
            pruned = _prune_exact(model, {"bn1": m1, "bn2": np.ones(4, bool)})
        np.testing.assert_array_equal(pruned.get_layer("cs").scale.numpy(), [2, 3, 5])
    finally:
        eb_tf.pruning.handlers.REGISTRY.pop(ChannelScale, None)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 20), keep=st.sampled_from([0.3, 0.6]))
def test_prune_is_exact_on_random_graphs_with_grouped_convs_and_tf_ops(seed, keep):
    keras.backend.clear_session()
    model, _ = testing.random_model(seed, blocks=5, activation="leaky", max_width=8,
                                    extended=True)
    masks = testing.random_masks(model, seed, keep=keep, min_keep=1)
    try:
        pruned = _prune_exact(model, masks, seed=seed % 1000)
    except ValueError as e:    # grouped and per-channel chains can cut the signal
        assert "independent of its input" in str(e), e
        assert not testing.output_varies(pruner.apply_masks(model, masks)), e
        return
    assert pruned.count_params() <= model.count_params()
