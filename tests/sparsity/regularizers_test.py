"""Tests for eb_tf.sparsity.regularizers (BN-L1, coupled weight decay) and channel_masks."""
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.sparsity import batchnorm, masks, regularizers

S, WD = 1e-4, 1e-4


def _net(frozen_bn=False):
    """conv-bn1 -> nested block(conv-bn2) -> bn3 (frozen if asked) -> dense."""
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    b_in = keras.Input((6, 6, 4))
    y = keras.layers.Conv2D(5, 3, use_bias=False, name="c2")(b_in)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.Model(b_in, y, name="block")(x)
    x = keras.layers.BatchNormalization(name="bn3", trainable=not frozen_bn)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="fc")(x), name="net")
    rng = np.random.default_rng(0)
    for w in model.weights:  # random gammas, betas and moving statistics
        value = rng.normal(size=w.shape).astype(np.float32)
        w.assign(np.abs(value) + 0.5 if "variance" in w.name else value)
    return model


def _x(shape=(3, 6, 6, 2)):
    return np.random.default_rng(1).normal(size=shape).astype(np.float32)


def _reg(model, path, slot):
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    reg = getattr(layer, slot)
    return None if reg is None else (type(reg).__name__,
                                     {k: float(v) for k, v in reg.get_config().items()})


def test_add_bn_l1_keeps_outputs_names_and_statistics_exactly():
    model = _net()
    out = regularizers.add_bn_l1(model, strength=S)
    assert out is not model and out.name == "net"
    assert [l.name for l in out.layers] == [l.name for l in model.layers]
    for training in (False, True):
        np.testing.assert_array_equal(model(_x(), training=training), out(_x(), training=training))
    for a, b in zip(model.weights, out.weights):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    f32 = float(np.float32(S))
    for key in ("bn1", "block/bn2", "bn3"):
        assert _reg(out, key, "gamma_regularizer") == ("L1", {"l1": f32})
        assert _reg(out, key, "beta_regularizer") is None
    assert _reg(out, "c1", "kernel_regularizer") is None
    assert len(out.losses) == 3


def test_add_bn_l1_is_idempotent_and_strength_zero_removes_it():
    once = regularizers.add_bn_l1(_net(), strength=S)
    twice = regularizers.add_bn_l1(once, strength=S)
    assert twice.get_config() == once.get_config()
    assert float(tf.add_n(twice.losses)) == float(tf.add_n(once.losses))
    assert not regularizers.add_bn_l1(once, strength=0.0).losses


def test_frozen_scale_free_and_excluded_bn_get_no_l1():
    model = _net(frozen_bn=True)
    out = regularizers.add_bn_l1(model, strength=S, exclude=["block/*"])
    assert _reg(out, "bn1", "gamma_regularizer") == ("L1", {"l1": float(np.float32(S))})
    assert _reg(out, "block/bn2", "gamma_regularizer") is None
    assert _reg(out, "bn3", "gamma_regularizer") is None and not out.get_layer("bn3").trainable
    assert len(out.losses) == 1
    with pytest.raises(ValueError, match=r"exclude entry 'bn9' matches no BN layer"):
        regularizers.add_bn_l1(model, exclude=["bn9"])


def _scale_free_net():
    """conv -> BN(scale=False) -> relu -> conv -> BN(scale=False, in a nested block)."""
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(scale=False, name="bn1")(x))
    b_in = keras.Input((6, 6, 4))
    y = keras.layers.Conv2D(5, 3, name="c2")(b_in)
    y = keras.layers.BatchNormalization(scale=False, name="bn2")(y)
    x = keras.Model(b_in, y, name="block")(x)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    for bn in (model.get_layer("bn1"), model.get_layer("block").get_layer("bn2")):
        bn.beta.assign(np.linspace(-1, 1, bn.beta.shape[0]))
        bn.moving_mean.assign(np.linspace(0, 0.5, bn.beta.shape[0]))
        bn.moving_variance.assign(np.linspace(1, 2, bn.beta.shape[0]))
    return model


def test_enable_scale_turns_gamma_on_at_one_keeps_outputs_and_logs(caplog):
    model = _scale_free_net()
    with caplog.at_level("INFO"):
        out = regularizers.add_bn_l1(model, strength=S)
    assert "turned on scale (gamma starts at 1) for 2 BatchNormalization layers that had " \
        "scale=False (bn1, block/bn2)" in caplog.text
    assert [r.key for r in batchnorm.bn_layers(out)] == ["bn1", "block/bn2"]
    bn1 = out.get_layer("bn1")
    assert bn1.scale and np.all(bn1.gamma.numpy() == 1.0)
    np.testing.assert_array_equal(bn1.moving_mean.numpy(), model.get_layer("bn1").moving_mean)
    assert _reg(out, "block/bn2", "gamma_regularizer") == ("L1", {"l1": float(np.float32(S))})
    np.testing.assert_allclose(out(_x(), training=False), model(_x(), training=False),
                               rtol=1e-6, atol=1e-6)
    masks_ = eb_tf.channel_masks(out, 0.5)
    assert sorted(masks_) == ["block/bn2", "bn1"]
    kept = regularizers.add_bn_l1(model, exclude=["block/*"])
    assert not kept.get_layer("block").get_layer("bn2").scale
    with pytest.raises(ValueError, match=r"2 have scale=False .*enable_scale=True"):
        regularizers.add_bn_l1(model, enable_scale=False)


@pytest.mark.parametrize("order", ["l1_first", "decay_first"])
def test_weight_decay_and_l1_combine_to_l1l2_in_either_order(order):
    model = _net()
    if order == "l1_first":
        out = regularizers.add_weight_decay(regularizers.add_bn_l1(model, S), WD)
    else:
        out = regularizers.add_bn_l1(regularizers.add_weight_decay(model, WD), S)
    half, f32 = float(np.float32(WD / 2)), float(np.float32(S))
    assert _reg(out, "bn1", "gamma_regularizer") == ("L1L2", {"l1": f32, "l2": half})
    assert _reg(out, "bn1", "beta_regularizer") == ("L2", {"l2": half})
    assert _reg(out, "block/c2", "kernel_regularizer") == ("L2", {"l2": half})
    assert _reg(out, "fc", "bias_regularizer") == ("L2", {"l2": half})
    assert _reg(out, "c1", "activity_regularizer") is None
    np.testing.assert_array_equal(model(_x()), out(_x()))
    again = regularizers.add_weight_decay(out, WD)
    assert again.get_config() == out.get_config()


def test_weight_decay_skips_frozen_layers():
    out = regularizers.add_weight_decay(_net(frozen_bn=True), WD)
    assert _reg(out, "bn3", "gamma_regularizer") is None
    assert _reg(out, "bn1", "gamma_regularizer") == ("L2", {"l2": float(np.float32(WD / 2))})


def test_frozen_nested_model_stays_frozen_and_unpenalised():
    model = _net()
    model.get_layer("block").trainable = False
    out = regularizers.add_weight_decay(regularizers.add_bn_l1(model, S), WD)
    assert not out.get_layer("block").trainable
    assert _reg(out, "block/bn2", "gamma_regularizer") is None
    assert _reg(out, "block/c2", "kernel_regularizer") is None
    assert _reg(out, "bn1", "gamma_regularizer")[0] == "L1L2"
    assert [r.key for r in batchnorm.bn_layers(out)] == ["bn1", "bn3"]
    frozen_model = _net()
    frozen_model.trainable = False
    assert not regularizers.add_weight_decay(frozen_model, WD).trainable


def test_gradient_of_added_loss_is_s_sign_gamma_plus_wd_w():
    model = _net()
    for name in ("bn1", "bn3"):  # include exact zeros: sign(0) = 0
        bn = model.get_layer(name)
        bn.gamma.assign(tf.tensor_scatter_nd_update(bn.gamma, [[0]], [0.0]))
    l1 = regularizers.add_bn_l1(model, S)
    both = regularizers.add_weight_decay(l1, WD)
    s32, wd32 = np.float32(S), np.float32(2 * np.float32(WD / 2))
    for clone, decay in ((l1, False), (both, True)):
        variables = [clone.get_layer("bn1").gamma, clone.get_layer("fc").kernel]
        with tf.GradientTape() as tape:
            loss = tf.add_n(clone.losses)
        g_gamma, g_kernel = tape.gradient(loss, variables)
        gamma, kernel = (v.numpy() for v in variables)
        want = s32 * np.sign(gamma) + (wd32 * gamma if decay else np.float32(0))
        np.testing.assert_array_equal(g_gamma.numpy(), want.astype(np.float32))
        if decay:
            np.testing.assert_array_equal(g_kernel.numpy(), wd32 * kernel)
        else:
            assert g_kernel is None


def test_penalty_survives_save_and_load(tmp_path):
    out = regularizers.add_weight_decay(regularizers.add_bn_l1(_net(), S), WD)
    path = str(tmp_path / "m.keras")
    out.save(path)
    loaded = keras.models.load_model(path)
    assert len(loaded.losses) == len(out.losses) == 11  # 11 weights with a penalty
    assert float(tf.add_n(loaded.losses)) == pytest.approx(float(tf.add_n(out.losses)), rel=1e-6)
    np.testing.assert_array_equal(loaded(_x()), out(_x()))
    assert _reg(loaded, "block/bn2", "gamma_regularizer")[0] == "L1L2"


@pytest.mark.parametrize("with_input", [True, False])
def test_sequential_models_are_cloned_with_weights(with_input):
    layers = [keras.layers.Dense(4, name="d"), keras.layers.BatchNormalization(name="b"),
              keras.layers.Dense(2, name="o")]
    if with_input:
        layers.insert(0, keras.Input((3,)))
    model = keras.Sequential(layers, name="seq")
    x = _x((5, 3))
    model(x)
    model.get_layer("b").gamma.assign([1.0, -2.0, 3.0, 0.5])
    out = regularizers.add_bn_l1(model, S)
    assert isinstance(out, keras.Sequential) and out.built
    np.testing.assert_array_equal(model(x), out(x))
    assert float(out.losses[0]) == pytest.approx(S * 6.5, rel=1e-6)


def test_tfmot_wrapped_bn_gets_l1_inside_quantize_scope():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                             keras.layers.BatchNormalization(name="b")])
    q = tfmot.quantization.keras.quantize_model(base)
    with tfmot.quantization.keras.quantize_scope():
        out = regularizers.add_bn_l1(q, S)
    ref = batchnorm.bn_layers(out)[0]
    assert ref.key == "b" and ref.wrapper is not None
    assert isinstance(ref.layer.gamma_regularizer, keras.regularizers.L1)
    np.testing.assert_array_equal(q(_x((2, 3))), out(_x((2, 3))))
    with pytest.raises(ValueError, match=r"cannot rebuild layer .* Apply eb_tf.add_bn_l1 before"):
        regularizers.add_bn_l1(q, S)


class _Sub(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.bn = keras.layers.BatchNormalization()

    def call(self, x):
        return self.bn(x)


def test_subclassed_model_gets_a_clear_error():
    model = _Sub()
    model(_x((2, 3)))
    for fn in (regularizers.add_bn_l1, regularizers.add_weight_decay):
        with pytest.raises(ValueError, match=r"'sub' is a subclassed model .* functional API"):
            fn(model)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"strength must be in \[0, inf\), got -1"):
        regularizers.add_bn_l1(_net(), strength=-1)
    with pytest.raises(ValueError, match=r"weight_decay must be in \[0, inf\), got nan"):
        regularizers.add_weight_decay(_net(), weight_decay=float("nan"))
    no_bn = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match=r"'plain' has no BatchNormalization layer"):
        regularizers.add_bn_l1(no_bn)


def test_custom_regulariser_is_not_silently_replaced():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(
        name="b", gamma_regularizer=keras.regularizers.OrthogonalRegularizer())])
    with pytest.raises(ValueError, match=r"b.gamma_regularizer already holds a "
                                         r"OrthogonalRegularizer"):
        regularizers.add_bn_l1(model)


class _Scale(keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_weight_decay_warns_about_layers_it_cannot_decay():
    model = keras.Sequential([keras.Input((3,)), _Scale(name="scale"), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match=r"layers \['scale'\] have trainable weights but no"):
        out = regularizers.add_weight_decay(model)
    assert len(out.losses) == 2


def test_channel_masks_reads_the_model_gammas():
    model = _net(frozen_bn=True)
    got = eb_tf.channel_masks(model, 0.5, exclude=["bn1"])
    assert list(got) == ["block/bn2"]  # bn3 is frozen, bn1 excluded
    want = masks.masks_from_gammas(
        {"block/bn2": model.get_layer("block").get_layer("bn2").gamma.numpy()}, 0.5)
    np.testing.assert_array_equal(got["block/bn2"], want["block/bn2"])
    assert int((~got["block/bn2"]).sum()) == 2


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("ratio", [0.99, 0.999])
@pytest.mark.parametrize("min_channels", [1, 2, 5])
def test_channel_masks_keep_min_channels_in_every_bn_at_extreme_ratios(scope, ratio,
                                                                       min_channels):
    model = _net()
    got = eb_tf.channel_masks(model, ratio, scope=scope, min_channels=min_channels)
    sizes = {r.key: int(r.gamma.shape[0]) for r in batchnorm.bn_layers(model)}
    assert list(got) == list(sizes)
    score = {k: np.abs(g) for k, g in eb_tf.gammas(model).items()}
    for key, mask in got.items():
        assert mask.sum() == min(min_channels, sizes[key]), (key, mask)   # 5 > 4: all of bn1
        kept, pruned = score[key][mask], score[key][~mask]
        assert not pruned.size or pruned.max() <= kept.min()   # the largest |gamma| are back


def test_channel_masks_min_channels_zero_may_empty_a_bn_and_bad_values_are_named():
    model = _net()
    got = eb_tf.channel_masks(model, 0.99, min_channels=0)
    assert sum(int(m.sum()) for m in got.values()) == 1           # floor(0.99 * 13) = 12 pruned
    with pytest.raises(ValueError, match=r"min_channels must be an int >= 0, got -1"):
        eb_tf.channel_masks(model, 0.5, min_channels=-1)
