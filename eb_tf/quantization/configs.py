"""tfmot QuantizeConfigs and the quantisation scheme that eb_tf's QAT search uses.

tfmot's default schemes quantise a BatchNormalization only when a convolution comes
right before it (it then keeps the BN unfolded with an output or no-op config); any
other BN, e.g. every pre-activation BN of a ResNet, makes `quantize_apply` raise. The
scheme here adds:

* `BNQuantizeConfig`: gamma/beta stay float and trainable (they are the channel
  scores of network slimming); the BN output is fake-quantised to activation_bits.
* `PassThroughQuantizeConfig`: layers that only move already-quantised values
  (the pruner's `ChannelSelect` gather): nothing new to quantise.
* `WageQuantizeConfig`: wraps any config to also quantise, in the backward pass,
  the gradients of its fake-quantised weights and the errors at the layer output.

`quantize_scope()` holds these for (de)serialisation, and loads `.keras` files of QAT
models, which tfmot's own scope cannot under tf_keras 2.16+.

Example:

    scheme = EBQuantizeScheme(weight_bits=8, activation_bits=8)
    with quantize_scope():
        qmodel = tfmot.quantization.keras.quantize_apply(annotated, scheme)
"""
import contextlib

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

from eb_tf.compat import BatchNormalizationBase, keras
from eb_tf.pruning.channel_select import ChannelSelect
from eb_tf.quantization import gradients as grad_quant

_Q = tfmot.quantization.keras

__all__ = ["BNQuantizeConfig", "PassThroughQuantizeConfig", "WageQuantizeConfig",
           "EBQuantizeRegistry", "EBQuantizeScheme", "QuantizeLayer", "custom_objects",
           "quantize_scope", "is_channel_select"]


def _register(cls):
    return keras.utils.register_keras_serializable(package="eb_tf")(cls)


def is_channel_select(layer) -> bool:
    """True for the pruner's `eb_tf.ChannelSelect` gather layer."""
    return isinstance(layer, ChannelSelect)


class _NoWeightsConfig(_Q.QuantizeConfig):
    """A config that quantises no weights and no activation attributes."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


@_register
class BNQuantizeConfig(_NoWeightsConfig):
    """BatchNorm: float, trainable gamma/beta; output fake-quantised to `activation_bits`."""

    def __init__(self, activation_bits: int = 8):
        self.activation_bits = grad_quant.check_bits(
            activation_bits, "activation_bits", "BNQuantizeConfig")

    def get_output_quantizers(self, layer):
        return [_Q.quantizers.MovingAverageQuantizer(
            num_bits=self.activation_bits, per_axis=False, symmetric=False,
            narrow_range=False)]

    def get_config(self):
        return {"activation_bits": self.activation_bits}


@_register
class PassThroughQuantizeConfig(_NoWeightsConfig):
    """For layers that only select/move values (gather): quantised in, quantised out."""


class _GradientQuantizingQuantizer(_Q.quantizers.Quantizer):
    """Runs `quantizer` on a weight whose gradient is quantised to `bits` (training only).

    Built at run time by `WageQuantizeConfig`, never serialised on its own.
    """

    def __init__(self, quantizer, bits):
        self.quantizer = quantizer
        self.bits = bits

    def build(self, tensor_shape, name, layer):
        return self.quantizer.build(tensor_shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        if training:
            inputs = grad_quant.quantize_backward(inputs, self.bits)
        return self.quantizer(inputs, training, weights, **kwargs)

    def get_config(self):
        return {"bits": self.bits}


class _ErrorQuantizer(_Q.quantizers.Quantizer):
    """Output quantizer: `quantizer` (or identity) forward, `bits`-bit errors backward."""

    def __init__(self, quantizer, bits):
        self.quantizer = quantizer
        self.bits = bits

    def build(self, tensor_shape, name, layer):
        return self.quantizer.build(tensor_shape, name, layer) if self.quantizer else {}

    def __call__(self, inputs, training, weights, **kwargs):
        outputs = (self.quantizer(inputs, training, weights, **kwargs)
                   if self.quantizer else inputs)
        return grad_quant.quantize_backward(outputs, self.bits) if training else outputs

    def get_config(self):
        return {"bits": self.bits}


@_register
class WageQuantizeConfig(_Q.QuantizeConfig):
    """Wraps `config`; adds backward quantisation of weight gradients and output errors.

    Args:
      config: the layer's forward QuantizeConfig (weights/activations as before).
      gradient_bits: bits of the gradients of the weights `config` fake-quantises
        (kernels); None keeps them float.
      error_bits: bits of the errors (dL/d output) flowing back into the layer; None
        keeps them float.
    """

    def __init__(self, config, gradient_bits=None, error_bits=None):
        self.config = config
        self.gradient_bits = grad_quant.check_bits(
            gradient_bits, "gradient_bits", "WageQuantizeConfig", allow_none=True)
        self.error_bits = grad_quant.check_bits(
            error_bits, "error_bits", "WageQuantizeConfig", allow_none=True)

    def get_weights_and_quantizers(self, layer):
        pairs = self.config.get_weights_and_quantizers(layer)
        if self.gradient_bits is None:
            return pairs
        return [(w, _GradientQuantizingQuantizer(q, self.gradient_bits)) for w, q in pairs]

    def get_activations_and_quantizers(self, layer):
        return self.config.get_activations_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        outputs = self.config.get_output_quantizers(layer)
        if self.error_bits is None:
            return outputs
        return [_ErrorQuantizer(outputs[0] if outputs else None, self.error_bits)]

    def get_config(self):
        return {"config": keras.utils.legacy.serialize_keras_object(self.config),
                "gradient_bits": self.gradient_bits, "error_bits": self.error_bits}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with _Q.quantize_scope(custom_objects()):
            config["config"] = keras.utils.legacy.deserialize_keras_object(config["config"])
        return cls(**config)


class EBQuantizeRegistry(_Q.QuantizeRegistry):
    """tfmot's registry for `weight_bits`/`activation_bits`, plus BN and ChannelSelect."""

    def __init__(self, base, activation_bits: int):
        self._base = base
        self._activation_bits = activation_bits

    def supports(self, layer):
        return (isinstance(layer, BatchNormalizationBase) or is_channel_select(layer)
                or self._base.supports(layer))

    def get_quantize_config(self, layer):
        if isinstance(layer, BatchNormalizationBase):
            return BNQuantizeConfig(self._activation_bits)
        if is_channel_select(layer):
            return PassThroughQuantizeConfig()
        return self._base.get_quantize_config(layer)


class EBQuantizeScheme(_Q.QuantizeScheme):
    """tfmot's default 8-bit scheme (or the n-bit one for other widths) + BN support.

    Args:
      weight_bits: weight bits, 2..16 (8 with 8 activation bits: tfmot's TFLite scheme).
      activation_bits: activation bits, 2..16.
    """

    def __init__(self, weight_bits: int = 8, activation_bits: int = 8):
        self.weight_bits = grad_quant.check_bits(weight_bits, "weight_bits", "EBQuantizeScheme")
        self.activation_bits = grad_quant.check_bits(
            activation_bits, "activation_bits", "EBQuantizeScheme")
        if (weight_bits, activation_bits) == (8, 8):
            self._base = _Q.default_8bit.Default8BitQuantizeScheme()
        else:
            self._base = _Q.experimental.default_n_bit.DefaultNBitQuantizeScheme(
                num_bits_weight=weight_bits, num_bits_activation=activation_bits)

    def get_layout_transformer(self):
        return self._base.get_layout_transformer()

    def get_quantize_registry(self):
        return EBQuantizeRegistry(self._base.get_quantize_registry(), self.activation_bits)


def custom_objects() -> dict:
    """{name: class} of eb_tf's quantisation objects, for `quantize_scope`/`load_model`."""
    objects = {cls.__name__: cls for cls in
               (BNQuantizeConfig, PassThroughQuantizeConfig, WageQuantizeConfig)}
    objects.update({keras.utils.get_registered_name(cls): cls for cls in list(objects.values())})
    return objects


class QuantizeLayer(quantize_layer.QuantizeLayer):
    """tfmot's input QuantizeLayer with an idempotent `build`.

    tfmot's `build` never sets `built`, so a `.keras` load (`build_from_config`, then
    the functional call) builds it twice and the load fails with "expected 5
    variables, but received 3". `quantize_scope` maps "QuantizeLayer" to this class.
    """

    def build(self, input_shape):
        if not self.built:
            super().build(input_shape)
            self.built = True


@contextlib.contextmanager
def quantize_scope():
    """tfmot's `quantize_scope` plus eb_tf's configs: use it to load a saved QAT model.

    Unlike tfmot's own scope it also loads `.keras` files of QAT models under tf_keras
    2.16+ (see `QuantizeLayer`).

    Example:

        with eb_tf.quantize_scope():
            qmodel = keras.models.load_model("search.keras")
    """
    objects = dict(custom_objects(), QuantizeLayer=QuantizeLayer)
    with _Q.quantize_scope(), keras.utils.custom_object_scope(objects):
        yield
