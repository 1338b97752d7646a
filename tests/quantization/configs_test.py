"""Tests of eb_tf.quantization.configs: eb_tf's QuantizeConfigs, registry and scheme."""
import pytest
import tensorflow_model_optimization as tfmot

from eb_tf.compat import keras
from eb_tf.pruning import channel_select
from eb_tf.quantization import configs, qat

Q = tfmot.quantization.keras
_serialize = keras.utils.legacy.serialize_keras_object
_deserialize = keras.utils.legacy.deserialize_keras_object


def _round_trip(config):
    with qat.quantize_scope():
        return _deserialize(_serialize(config))


def test_bn_config_round_trips_and_quantizes_only_the_output():
    config = configs.BNQuantizeConfig(activation_bits=6)
    again = _round_trip(config)
    assert type(again) is configs.BNQuantizeConfig
    assert again.get_config() == {"activation_bits": 6}
    bn = keras.layers.BatchNormalization()
    assert again.get_weights_and_quantizers(bn) == []
    assert again.get_activations_and_quantizers(bn) == []
    (quantizer,) = again.get_output_quantizers(bn)
    assert isinstance(quantizer, Q.quantizers.MovingAverageQuantizer)
    assert quantizer.get_config() == dict(num_bits=6, per_axis=False, symmetric=False,
                                          narrow_range=False)


def test_pass_through_config_round_trips_and_quantizes_nothing():
    again = _round_trip(configs.PassThroughQuantizeConfig())
    layer = keras.layers.Layer()
    assert type(again) is configs.PassThroughQuantizeConfig
    assert again.get_output_quantizers(layer) == []
    assert again.get_weights_and_quantizers(layer) == []


def test_wage_config_round_trips_with_its_inner_config():
    inner = configs.BNQuantizeConfig(4)
    again = _round_trip(configs.WageQuantizeConfig(inner, 8, 6))
    assert (again.gradient_bits, again.error_bits) == (8, 6)
    assert type(again.config) is configs.BNQuantizeConfig
    assert again.config.activation_bits == 4


def test_wage_config_wraps_weight_and_output_quantizers():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    base = Q.default_8bit.Default8BitQuantizeRegistry().get_quantize_config(dense)
    wage = configs.WageQuantizeConfig(base, gradient_bits=8, error_bits=8)
    ((weight, quantizer),) = wage.get_weights_and_quantizers(dense)
    assert weight is dense.kernel and quantizer.bits == 8
    (output,) = wage.get_output_quantizers(dense)
    assert output.bits == 8 and output.quantizer is None      # Dense has no output FQ
    only_g = configs.WageQuantizeConfig(base, gradient_bits=4)
    assert only_g.get_output_quantizers(dense) == []


@pytest.mark.parametrize("bits", [1, 17])
def test_configs_reject_bad_bits(bits):
    with pytest.raises(ValueError, match=rf"activation_bits={bits} is out of range"):
        configs.BNQuantizeConfig(bits)
    with pytest.raises(ValueError, match=rf"error_bits={bits} is out of range"):
        configs.WageQuantizeConfig(configs.PassThroughQuantizeConfig(),
                                            error_bits=bits)
    with pytest.raises(ValueError, match=rf"weight_bits={bits} is out of range"):
        configs.EBQuantizeScheme(weight_bits=bits)


def test_scheme_uses_tfmot_8bit_for_w8a8_and_n_bit_otherwise():
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 8, 8, 3))
    eight = configs.EBQuantizeScheme(8, 8).get_quantize_registry()
    assert type(eight.get_quantize_config(conv)).__name__ == "Default8BitConvQuantizeConfig"
    four = configs.EBQuantizeScheme(4, 6).get_quantize_registry()
    config = four.get_quantize_config(conv)
    assert type(config).__name__ == "DefaultNBitConvQuantizeConfig"
    assert config.weight_quantizer.num_bits == 4
    assert config.activation_quantizer.num_bits == 6


def test_registry_supports_every_batch_norm_with_eb_config():
    registry = configs.EBQuantizeScheme(8, 5).get_quantize_registry()
    for bn in (keras.layers.BatchNormalization(),
               keras.layers.experimental.SyncBatchNormalization()):
        assert registry.supports(bn)
        config = registry.get_quantize_config(bn)
        assert isinstance(config, configs.BNQuantizeConfig)
        assert config.activation_bits == 5
    assert not registry.supports(keras.layers.LayerNormalization())


def test_channel_select_is_a_pass_through_when_the_pruner_has_it():
    registry = configs.EBQuantizeScheme().get_quantize_registry()
    assert not configs.is_channel_select(keras.layers.Dense(2))
    layer = channel_select.ChannelSelect([0, 2])
    assert configs.is_channel_select(layer) and registry.supports(layer)
    assert isinstance(registry.get_quantize_config(layer),
                      configs.PassThroughQuantizeConfig)
