"""VGG with BatchNorm, the network-slimming CIFAR variant (Liu et al. 2017; You et al. 2020).

Built as `Eric-mingjie/network-slimming/models/vgg.py` builds it: for every number
in the config a 3x3 conv (padding 1, no bias), BatchNorm, ReLU; 'M' is a 2x2
max-pool. The CIFAR configs have only four max-pools, so a 32x32 input leaves a 2x2
map, which the reference averages with `nn.AvgPool2d(2)`, flattens and feeds to
`nn.Linear(cfg[-1], num_classes)`. Here that average is a `GlobalAveragePooling2D`:
identical on the 2x2 map of a 32x32 input, and it also accepts other input sizes
(e.g. 16x16 digits) with the same classifier. Init as the reference: conv
normal(0, sqrt(2/n)) with n = 3*3*out_channels, BN gamma 0.5 and beta 0, linear
normal(0, 0.01) with bias 0. VGG-16 for CIFAR-10 at width 1.0 has 14,732,490
parameters (14,724,042 trainable, 8,448 BN moving statistics).

Example:

    from eb_tf.models import vgg
    model = vgg.vgg(16, num_classes=10, input_shape=(32, 32, 3), width=0.25)
"""
from typing import Optional, Sequence

from eb_tf.models import common
from eb_tf.models.common import keras

CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512),
}


def vgg(depth: int = 16, num_classes: int = 10, input_shape=(32, 32, 3), width: float = 1.0,
        cfg: Optional[Sequence] = None, gamma_init: float = 0.5, name: Optional[str] = None):
    """The network-slimming VGG (with BN) as a functional tf_keras model (logits out).

    Args:
      depth: 11, 13, 16 or 19 (ignored when `cfg` is given).
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels); 32x32x3 for CIFAR.
      width: multiplies every conv's channels, rounded half up and at least 1
        (width 0.25 gives 16, 32, 64, 128 channels).
      cfg: a custom config, numbers and 'M' (e.g. the widths of a pruned ticket).
      gamma_init: the BN gammas' initial value (0.5 in the reference code).
      name: the model's name (default `vgg{depth}`).

    Returns:
      A `keras.Model`; layers `conv{i}`, `bn{i}`, `relu{i}`, `pool{j}`, `avgpool`, `fc`.

    Raises:
      ValueError: for an unknown depth, a bad config, width or input shape.

    Example:

        model = vgg(16, num_classes=10, width=0.25)
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    """
    where = "eb_tf.models.vgg"
    width = common.check_width(width, where)
    input_shape, num_classes = common.check_input(input_shape, num_classes, where)
    if cfg is None:
        if depth not in CONFIGS:
            raise ValueError(f"{where}: depth must be one of {sorted(CONFIGS)}, got {depth!r}.")
        cfg = CONFIGS[depth]
    cfg = tuple(cfg)
    if not cfg or any(v != "M" and (isinstance(v, bool) or not isinstance(v, int) or v < 1)
                      for v in cfg) or cfg[-1] == "M":
        raise ValueError(f"{where}: cfg must list positive ints (conv widths) and 'M' "
                         f"(max-pools) and end with a conv, got {cfg!r}.")
    pools = cfg.count("M")
    if any(d is not None and d < 2 ** pools for d in input_shape[:2]):
        raise ValueError(f"{where}: input_shape {input_shape} is too small for {pools} "
                         f"max-pools; height and width must be at least {2 ** pools}.")
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    conv_i = pool_i = 0
    for v in cfg:
        if v == "M":
            pool_i += 1
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{pool_i}")(x)
        else:
            conv_i += 1
            x = common.conv(x, common.scaled(v, width), 3, name=f"conv{conv_i}")
            x = common.bn(x, gamma_init, name=f"bn{conv_i}")
            x = common.relu(x, name=f"relu{conv_i}")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
        bias_initializer="zeros", name="fc")(x)
    return keras.Model(inputs, outputs, name=name or f"vgg{depth}")
