"""Building blocks shared by the zoo: PyTorch-equivalent initialisers, BN, widths.

The zoo reproduces the PyTorch reference code of network slimming and the
Early-Bird paper, so the defaults here are PyTorch's, not Keras's:

* conv kernels ~ normal(0, sqrt(2 / n)), n = k * k * out_channels (He, fan-out);
* BatchNormalization with epsilon 1e-5 and momentum 0.9 (PyTorch's momentum 0.1);
* `nn.Linear`'s default init, uniform(+-1/sqrt(fan_in)) for kernel and bias, unless a
  model says otherwise (the slimming VGG uses normal(0, 0.01) and bias 0).

The builders build with `keras` below: tf_keras, or Keras 3 inside `use_keras(3)`
(`eb_tf.models.build(..., keras_version=3)` enters it), so one builder serves both.
"""
import contextlib
import contextvars
import math

from eb_tf.compat import keras as _tf_keras
from eb_tf.compat import keras3 as _keras3

KERAS_VERSIONS = (2, 3)
_ACTIVE = contextvars.ContextVar("eb_tf_models_keras_version", default=2)


class _ActiveKeras:
    """The Keras module the zoo builds with now: tf_keras, or Keras 3 in `use_keras(3)`."""

    def __getattr__(self, name):
        return getattr(_keras3 if _ACTIVE.get() == 3 else _tf_keras, name)


keras = _ActiveKeras()


@contextlib.contextmanager
def use_keras(version: int):
    """Builds zoo models with Keras `version` (2: tf_keras, 3: Keras 3) inside the block.

    Example:

        with common.use_keras(3):
            model = vgg.vgg(16, 10, (32, 32, 3))      # a Keras 3 model
    """
    if isinstance(version, bool) or version not in KERAS_VERSIONS:
        raise ValueError(f"keras_version must be 2 (tf_keras) or 3 (Keras 3, TensorFlow "
                         f"backend), got {version!r}.")
    token = _ACTIVE.set(int(version))
    try:
        yield
    finally:
        _ACTIVE.reset(token)

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def scaled(channels: int, width: float) -> int:
    """`channels * width` rounded half up, at least 1 (e.g. 64 * 0.25 = 16, 3 * 0.5 = 2)."""
    return max(1, int(math.floor(channels * width + 0.5)))


def check_width(width, where: str) -> float:
    """Returns `width` as a float, or raises a ValueError naming the allowed range."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"{where}: width must be a number > 0 (1.0 = the paper's widths), "
                         f"got {width!r}.")
    return float(width)


def check_input(input_shape, num_classes, where: str, min_size: int = 1):
    """Validates `input_shape` (H, W, C) and `num_classes`; returns them normalised."""
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or any(d is not None and d < 1 for d in shape) or shape[2] is None:
        raise ValueError(f"{where}: input_shape must be (height, width, channels) with "
                         f"positive sizes (height/width may be None), got {input_shape!r}.")
    if any(d is not None and d < min_size for d in shape[:2]):
        raise ValueError(f"{where}: input_shape {shape} is too small; height and width must "
                         f"be at least {min_size}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes!r}.")
    return shape, num_classes


def conv_init():
    """normal(0, sqrt(2 / (k * k * out_channels))): the reference code's conv init."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")


def conv(x, filters, kernel_size, strides=1, name=None):
    """A bias-free conv with 'same' padding and the reference init."""
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                               use_bias=False, kernel_initializer=conv_init(),
                               name=name)(x)


def bn(x, gamma_init=1.0, name=None):
    """BatchNormalization with PyTorch's epsilon/momentum and gamma initialised to `gamma_init`."""
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
        gamma_initializer=keras.initializers.Constant(gamma_init),
        beta_initializer="zeros", name=name)(x)


def relu(x, name=None):
    return keras.layers.ReLU(name=name)(x)


def torch_linear(x, units, name=None):
    """Dense with PyTorch's `nn.Linear` default init: kernel and bias ~ U(+-1/sqrt(fan_in))."""
    fan_in = int(x.shape[-1])
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Dense(
        units, kernel_initializer=keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound), name=name)(x)
