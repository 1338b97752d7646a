"""Tests of eb_tf.quantization.qat: QAT search models, backward quantisation, strip to float."""
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.pruning import channel_select
from eb_tf.quantization import qat
from eb_tf.sparsity import batchnorm

L = keras.layers
_X = np.random.RandomState(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)


def _post_activation(l1=0.0):
    """Conv -> BN -> ReLU twice (tfmot's Conv->BN pattern), then a classifier."""
    reg = keras.regularizers.L1(l1) if l1 else None
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv1")(x)
    h = L.ReLU(name="relu1")(L.BatchNormalization(gamma_regularizer=reg, name="bn1")(h))
    h = L.Conv2D(8, 3, strides=2, use_bias=False, name="conv2")(h)
    h = L.Activation("relu", name="relu2")(
        L.BatchNormalization(gamma_regularizer=reg, name="bn2")(h))
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, L.Dense(3, name="fc")(h), name="post")


def _pre_activation():
    """A pre-activation residual net: BN -> ReLU -> Conv, no conv before the BNs."""
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(x)
    b = L.ReLU(name="r1")(L.BatchNormalization(name="pre_bn1")(h))
    b = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv_a")(b)
    b = L.ReLU(name="r2")(L.BatchNormalization(name="pre_bn2")(b))
    b = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv_b")(b)
    h = L.Add(name="add")([h, b])
    h = L.ReLU(name="r3")(L.BatchNormalization(name="final_bn")(h))
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, L.Dense(3, name="fc")(h), name="pre")


def _randomise_bn(model, seed=0):
    rng = np.random.RandomState(seed)
    for ref in batchnorm.bn_layers(model):
        n = ref.layer.gamma.shape[0]
        ref.layer.set_weights([rng.uniform(-1, 1, n), rng.uniform(-.2, .2, n),
                               rng.uniform(-.1, .1, n), rng.uniform(.5, 2, n)])
    return model


@pytest.fixture(name="models", scope="module")
def _models():
    """(float, QAT W8/A8) pairs of both nets, built once for the read-only tests."""
    out = {}
    for build in (_post_activation, _pre_activation):
        model = _randomise_bn(build())
        out[model.name] = (model, qat.quantize_for_search(model))
    return out


@pytest.mark.parametrize("name", ["post", "pre"])
def test_every_layer_is_wrapped_and_gammas_read_through_wrappers(models, name):
    model, qmodel = models[name]
    wrapped = [layer for layer in qmodel.layers
               if not isinstance(layer, keras.layers.InputLayer)]
    assert all(type(layer).__name__ in ("QuantizeWrapperV2", "QuantizeLayer")
               for layer in wrapped)
    assert qat.is_quantized(qmodel) and not qat.is_quantized(model)
    refs = batchnorm.bn_layers(qmodel)
    assert [r.key for r in refs] == [r.key for r in batchnorm.bn_layers(model)]
    assert all(type(r.wrapper).__name__ == "QuantizeWrapperV2" for r in refs)
    trainable = {id(v) for v in qmodel.trainable_variables}
    assert all(id(r.gamma) in trainable and id(r.layer.beta) in trainable for r in refs)
    gammas, q_gammas = batchnorm.gammas(model), batchnorm.gammas(qmodel)
    for key, value in gammas.items():
        np.testing.assert_array_equal(q_gammas[key], value)


def test_pre_activation_bns_get_eb_config_and_conv_bn_keeps_tfmot_pattern(models):
    configs = {layer.layer.name: type(layer.quantize_config).__name__
               for layer in models["pre"][1].layers if hasattr(layer, "quantize_config")}
    # no conv right before: after the shared stem, after the residual Add
    assert configs["pre_bn1"] == configs["final_bn"] == "BNQuantizeConfig"
    assert configs["pre_bn2"] == "NoOpQuantizeConfig"      # conv_a -> pre_bn2 -> ReLU
    post = {layer.layer.name: layer for layer in models["post"][1].layers
            if hasattr(layer, "quantize_config")}
    assert type(post["bn1"].quantize_config).__name__ == "NoOpQuantizeConfig"  # BN->ReLU
    activation = post["conv1"].layer.get_config()["activation"]["config"]["activation"]
    assert activation["class_name"] == "NoOpActivation"     # no fake-quant before the BN


@pytest.mark.parametrize("name", ["post", "pre"])
def test_channel_masks_through_wrappers_match_float(models, name):
    model, qmodel = models[name]
    masks, q_masks = eb_tf.channel_masks(model, 0.5), eb_tf.channel_masks(qmodel, 0.5)
    assert masks.keys() == q_masks.keys()
    for key, mask in masks.items():
        np.testing.assert_array_equal(q_masks[key], mask)


def test_sixteen_bit_fake_quant_is_near_identity():
    model = _randomise_bn(_pre_activation())
    qmodel = qat.quantize_for_search(model, weight_bits=16, activation_bits=16)
    out, q_out = model(_X, training=True), qmodel(_X, training=True)
    scale = float(tf.reduce_max(tf.abs(out)))
    np.testing.assert_allclose(q_out, out, atol=2e-3 * scale)


def test_eight_bit_output_error_is_within_half_a_step():
    bn = _randomise_bn(_pre_activation())
    qmodel = qat.quantize_for_search(bn)
    wrapper = next(l for l in qmodel.layers if getattr(l, "layer", None) is not None
                   and l.layer.name == "pre_bn1")
    x = tf.constant(np.random.RandomState(2).randn(4, 8, 8, 6).astype(np.float32))
    exact = wrapper.layer(x, training=True).numpy()
    quantised = wrapper(x, training=True).numpy()
    variables = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in wrapper.weights}
    step = (variables["output_max"] - variables["output_min"]) / 255
    assert 0 < np.abs(quantised - exact).max() <= step / 2 + 1e-5
    assert len(np.unique(quantised)) <= 256


@pytest.mark.parametrize("bits", [4, 8])
def test_weight_bits_limit_distinct_kernel_values_per_channel(bits):
    qmodel = qat.quantize_for_search(_post_activation(), weight_bits=bits,
                                          activation_bits=8)
    qmodel(_X, training=True)
    conv = next(l for l in qmodel.layers if getattr(l, "layer", None) is not None
                and l.layer.name == "conv2")
    kernel = conv.layer.kernel.numpy()         # tfmot sets the fake-quantised tensor
    distinct = max(len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1]))
    assert 2 < distinct <= 2 ** bits - 1


def test_l1_regulariser_on_gamma_survives_quantization():
    model = _randomise_bn(_post_activation(l1=1e-4))
    qmodel = qat.quantize_for_search(model)
    expected = 1e-4 * sum(np.abs(g).sum() for g in batchnorm.gammas(model).values())
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert float(tf.add_n(qmodel.losses)) == pytest.approx(expected, rel=1e-5)
    ref = batchnorm.bn_layers(qmodel)[0]
    with tf.GradientTape() as tape:
        loss = tf.add_n(qmodel.losses)
    np.testing.assert_allclose(tape.gradient(loss, ref.gamma),
                               1e-4 * np.sign(ref.gamma.numpy()), rtol=1e-5)


def test_add_bn_l1_then_quantize_keeps_l1_loss():
    model = eb_tf.add_bn_l1(_randomise_bn(_pre_activation()), strength=1e-4)
    qmodel = qat.quantize_for_search(model)
    expected = 1e-4 * sum(np.abs(g).sum() for g in batchnorm.gammas(model).values())
    assert float(tf.add_n(qmodel.losses)) == pytest.approx(expected, rel=1e-5)


def _grads(qmodel, x, weights=None):
    upstream = tf.constant(np.random.RandomState(3).randn(x.shape[0], 3).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(qmodel(x, training=True) * upstream)
    variables = weights or qmodel.trainable_variables
    return {v.name: g.numpy() for v, g in zip(variables, tape.gradient(loss, variables))}


def _on_grid(g, bits=8):
    step = np.abs(g).max() / (2 ** (bits - 1) - 1)
    return np.allclose(g / step, np.round(g / step), atol=1e-3)


def test_gradient_bits_put_kernel_gradients_on_the_grid():
    model = _randomise_bn(_pre_activation())
    grads = _grads(qat.quantize_for_search(model, gradient_bits=8), _X)
    kernels = [n for n in grads if "kernel" in n]
    assert len(kernels) == 4 and all(_on_grid(grads[n]) for n in kernels)
    float_grads = _grads(qat.quantize_for_search(model), _X)
    assert not all(_on_grid(float_grads[n]) for n in kernels)   # the check can fail


def test_error_bits_quantise_the_error_entering_a_layer():
    x = keras.Input((5,))
    model = keras.Model(x, L.Dense(3, name="fc")(x))
    qmodel = qat.quantize_for_search(model, error_bits=4)
    types = [type(l.quantize_config).__name__ for l in qmodel.layers
             if hasattr(l, "quantize_config")]
    assert types == ["WageQuantizeConfig"]
    bias = [v for v in qmodel.trainable_variables if "bias" in v.name]
    upstream = np.random.RandomState(3).randn(1, 3).astype(np.float32)
    # batch of one: dL/dbias == the (quantised) error at the Dense output
    grad = _grads(qmodel, np.ones((1, 5), np.float32), bias)
    (value,) = grad.values()
    step = np.abs(upstream).max() / 7
    np.testing.assert_allclose(value / step, np.round(value / step), atol=1e-4)
    assert np.all(np.abs(value - upstream[0]) < step + 1e-6)
    assert not np.allclose(value, upstream[0])


def test_strip_quantization_restores_architecture_and_weights():
    model = _randomise_bn(_post_activation(l1=1e-4))
    qmodel = qat.quantize_for_search(model, gradient_bits=8, error_bits=8)
    qmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    qmodel.fit(_X, np.ones((4, 3), np.float32), epochs=1, verbose=0)
    stripped = qat.strip_quantization(qmodel)
    assert not qat.is_quantized(stripped)
    assert [l.name for l in stripped.layers] == [l.name for l in model.layers]
    assert len(stripped.weights) == len(model.weights)
    assert stripped.get_layer("conv1").get_config()["activation"] == "linear"
    assert float(tf.add_n(stripped.losses)) > 0                     # L1 kept
    trained = {v.name.split("/")[-1]: v.numpy() for v in qmodel.get_layer("quant_bn2").weights}
    np.testing.assert_array_equal(stripped.get_layer("bn2").gamma.numpy(), trained["gamma:0"])
    kernel = [v for v in qmodel.get_layer("quant_fc").trainable_weights if "kernel" in v.name]
    np.testing.assert_array_equal(stripped.get_layer("fc").kernel.numpy(), kernel[0].numpy())
    assert not np.array_equal(stripped.get_layer("fc").kernel.numpy(),
                              model.get_layer("fc").kernel.numpy())   # it did train


@pytest.mark.parametrize("name", ["post", "pre"])
def test_strip_of_untrained_qat_model_is_the_float_model_exactly(models, name):
    model, qmodel = models[name]
    stripped = qat.strip_quantization(qmodel)
    np.testing.assert_array_equal(stripped(_X, training=False), model(_X, training=False))


def test_sequential_models_quantize_and_strip():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c"),
                              L.BatchNormalization(name="bn"), L.ReLU(), L.Flatten(),
                              L.Dense(2, name="fc")])
    qmodel = qat.quantize_for_search(model)
    assert [r.key for r in batchnorm.bn_layers(qmodel)] == ["bn"]
    stripped = qat.strip_quantization(qmodel)
    np.testing.assert_array_equal(stripped(_X), model(_X))


def test_keras_file_of_wage_model_round_trips(tmp_path):
    qmodel = qat.quantize_for_search(_randomise_bn(_pre_activation()),
                                          gradient_bits=8, error_bits=8)
    qmodel(_X, training=True)                     # moves the quantiser ranges
    path = str(tmp_path / "search.keras")
    qmodel.save(path)
    with qat.quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(_X), qmodel(_X))
    assert [w.shape for w in loaded.weights] == [w.shape for w in qmodel.weights]
    weights = str(tmp_path / "weights.h5")         # what EarlyBird's save_dir writes
    qmodel.save_weights(weights)
    loaded.set_weights([np.zeros_like(w) for w in loaded.get_weights()])
    loaded.load_weights(weights)
    np.testing.assert_array_equal(loaded(_X), qmodel(_X))
    configs = [type(l.quantize_config).__name__ for l in loaded.layers
               if hasattr(l, "quantize_config")]
    assert configs == ["WageQuantizeConfig"] * 12


@pytest.mark.parametrize("build", [_post_activation, _pre_activation])
def test_strip_then_prune_of_qat_search_is_exact_against_masked_float(build):
    qmodel = qat.quantize_for_search(_randomise_bn(build()), gradient_bits=8)
    qmodel.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    qmodel.fit(_X, np.ones((4, 3), np.float32), epochs=2, verbose=0)
    float_model = qat.strip_quantization(qmodel)
    masks = {k: np.abs(g) >= np.median(np.abs(g)) for k, g in
             batchnorm.gammas(float_model).items()}
    ticket = eb_tf.prune(float_model, masks)
    masked = eb_tf.apply_masks(float_model, masks)
    np.testing.assert_allclose(ticket(_X, training=False), masked(_X, training=False),
                               rtol=1e-5, atol=1e-5)
    qticket = qat.quantize_for_search(ticket)          # int8 retrain of the ticket
    assert qat.is_quantized(qticket)
    assert sorted(batchnorm.gammas(qticket)) == sorted(masks)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_bits=1), r"weight_bits=1 is out of range.*2 <= weight_bits <= 16"),
    (dict(activation_bits=17), r"activation_bits=17 is out of range"),
    (dict(gradient_bits=0), r"gradient_bits=0"),
    (dict(error_bits="8"), r"error_bits must be an int"),
])
def test_bad_bit_widths_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        qat.quantize_for_search(_post_activation(), **kwargs)


def _with_layer(layer):
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, use_bias=False, name="conv")(x)
    return keras.Model(x, L.Flatten()(layer(h)))


@pytest.mark.parametrize("layer, match", [
    (L.Lambda(lambda t: t * 2.0, name="double"), r"'double' is a Lambda layer"),
    (L.LayerNormalization(name="ln"), r"'ln' of type LayerNormalization has no QAT"),
])
def test_unwrappable_layers_are_errors_naming_the_layer(layer, match):
    with pytest.raises(ValueError, match=match):
        qat.quantize_for_search(_with_layer(layer))


def test_unsupported_models_are_errors():
    inner = _post_activation()
    x = keras.Input((8, 8, 3))
    nested = keras.Model(x, inner(x))
    with pytest.raises(ValueError, match=r"'post' is a nested model"):
        qat.quantize_for_search(nested)

    class Sub(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match=r"subclassed model"):
        qat.quantize_for_search(Sub())
    qmodel = qat.quantize_for_search(inner)
    with pytest.raises(ValueError, match=r"already quantised.*strip_quantization"):
        qat.quantize_for_search(qmodel)
    with pytest.raises(ValueError, match=r"no tfmot QuantizeWrapper.*already a float"):
        qat.strip_quantization(inner)
    with pytest.raises(ValueError, match=r"expects a tf_keras.Model"):
        qat.strip_quantization("model")


def test_channel_select_of_a_pruned_pre_activation_net_is_wrapped_and_stripped():
    x = keras.Input((8, 8, 3))
    stem = L.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(x)
    b = channel_select.ChannelSelect([0, 2, 5], name="select")(stem)
    b = L.ReLU(name="r1")(L.BatchNormalization(name="pre_bn1")(b))
    b = L.Conv2D(6, 1, use_bias=False, name="conv_a")(b)
    h = L.GlobalAveragePooling2D(name="gap")(L.Add(name="add")([stem, b]))
    model = _randomise_bn(keras.Model(x, L.Dense(3, name="fc")(h)))
    qmodel = qat.quantize_for_search(model)
    select = qmodel.get_layer("quant_select")
    assert type(select.quantize_config).__name__ == "PassThroughQuantizeConfig"
    stripped = qat.strip_quantization(qmodel)
    assert stripped.get_layer("select").indices == [0, 2, 5]
    np.testing.assert_array_equal(stripped(_X), model(_X))
    q_out = qmodel(_X, training=True).numpy()
    np.testing.assert_allclose(q_out, model(_X, training=True), atol=0.1)
