"""Tests of eb_tf.quantization.precision: the precision modes of search and retrain."""
import json

import numpy as np
import pytest

from eb_tf.compat import keras, tf
from eb_tf.quantization import precision, qat
from eb_tf.sparsity import batchnorm

L = keras.layers
_X = np.random.RandomState(0).uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32)
_Y = np.arange(8) % 3


def _net():
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    h = L.ReLU(name="relu")(L.BatchNormalization(name="bn", gamma_initializer=
                                                 keras.initializers.Constant(0.5))(h))
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, L.Dense(3, name="fc")(h))


def test_specs_state_every_mode_and_are_json():
    specs = {p: precision.precision_spec(p) for p in precision.SEARCH_PRECISIONS}
    json.dumps(specs)
    assert specs["int8_wage"] == dict(
        precision="int8_wage", weight_bits=8, activation_bits=8, gradient_bits=8,
        error_bits=8, dtype_policy="float32", loss_scale=False, flops_counted_as="fp32")
    assert specs["int8"]["gradient_bits"] is None and specs["int8"]["weight_bits"] == 8
    assert specs["fp16"]["loss_scale"] and specs["fp16"]["dtype_policy"] == "mixed_float16"
    assert specs["bf16"]["dtype_policy"] == "mixed_bfloat16"
    assert specs["fp32"]["weight_bits"] is None


@pytest.mark.parametrize("prec, phase, match", [
    ("int4", "search", r"precision='int4' is not supported for phase 'search'.*'fp32', "
                       r"'int8', 'int8_wage', 'bf16', 'fp16'"),
    ("int8_wage", "retrain", r"precision='int8_wage' is not supported for phase 'retrain'"
                             r".*\('fp32', 'int8', 'bf16', 'fp16'\)"),
    ("fp32", "draw", r"phase='draw' is not supported"),
])
def test_unknown_precision_or_phase_is_an_error(prec, phase, match):
    with pytest.raises(ValueError, match=match):
        precision.prepare_for_precision(_net(), prec, phase)


def test_fp32_is_unchanged():
    model = _net()
    prepared = precision.prepare_for_precision(model, "fp32")
    sgd = keras.optimizers.SGD()
    assert prepared.model is model and prepared.wrap_optimizer(sgd) is sgd
    assert precision.strip_precision(model) is model


@pytest.mark.parametrize("prec, config", [("int8", "Default8BitConvQuantizeConfig"),
                                          ("int8_wage", "WageQuantizeConfig")])
def test_int8_modes_quantize_and_strip_back(prec, config):
    model = _net()
    prepared = precision.prepare_for_precision(model, prec, "retrain" if prec == "int8"
                                               else "search")
    assert qat.is_quantized(prepared.model)
    conv = prepared.model.get_layer("quant_conv")
    assert type(conv.quantize_config).__name__ == config
    stripped = precision.strip_precision(prepared.model)
    np.testing.assert_array_equal(stripped(_X), model(_X))


@pytest.mark.parametrize("prec, compute", [("bf16", tf.bfloat16), ("fp16", tf.float16)])
def test_mixed_modes_keep_variables_and_logits_float32(prec, compute):
    model = _net()
    prepared = precision.prepare_for_precision(model, prec)
    mixed = prepared.model
    assert mixed.get_layer("conv").compute_dtype == compute.name
    assert mixed.get_layer("bn").compute_dtype == compute.name
    assert mixed.get_layer("fc").compute_dtype == "float32"       # the logits
    assert all(v.dtype == tf.float32 for v in mixed.weights)
    assert [r.key for r in batchnorm.bn_layers(mixed)] == ["bn"]
    np.testing.assert_array_equal(batchnorm.gammas(mixed)["bn"], np.full(8, 0.5, np.float32))
    out = mixed(_X)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out, model(_X), atol=0.05)
    back = precision.strip_precision(mixed)
    assert {layer.dtype_policy.name for layer in back.layers} == {"float32"}
    np.testing.assert_array_equal(back(_X), model(_X))


def test_fp16_wraps_optimizer_in_loss_scaling_and_trains():
    prepared = precision.prepare_for_precision(_net(), "fp16")
    optimizer = prepared.wrap_optimizer(keras.optimizers.SGD(0.1))
    assert isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert prepared.wrap_optimizer(optimizer) is optimizer
    prepared.model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    before = batchnorm.gammas(prepared.model)["bn"]
    history = prepared.model.fit(_X, _Y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.array_equal(batchnorm.gammas(prepared.model)["bn"], before)


def test_with_policy_errors():
    with pytest.raises(ValueError, match=r"policy='float16' is not supported"):
        precision.with_policy(_net(), "float16")
    with pytest.raises(ValueError, match=r"expects a Keras model \(tf_keras or Keras 3\)"):
        precision.with_policy(object(), "mixed_bfloat16")
    with pytest.raises(ValueError, match=r"is a QAT model.*strip_quantization"):
        precision.with_policy(qat.quantize_for_search(_net()), "mixed_float16")
