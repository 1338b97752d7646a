"""ResNets in the ImageNet layout (He et al. 2015), post-activation, as torchvision builds them.

Stem conv7x7/2 (64) - BN - ReLU - maxpool3x3/2, four stages (64, 128, 256, 512
planes; basic blocks for 18/34, bottlenecks x4 for 50/101/152), global average
pooling, linear. Convention: every conv has no bias and is followed by a BN (the
BN's beta is the bias), as torchvision; keras.applications.ResNet50 instead keeps
conv biases (25,636,712 parameters against 25,557,032 here). Bottlenecks stride in
the 3x3 conv (v1.5). Shortcuts: identity, or conv1x1 (strided) + BN when the shape
changes. 'same' padding, so any input size works (32x32 gives a 1x1 final map).
Init: conv He fan-out normal, BN gamma `gamma_init` (1.0) and beta 0, linear
PyTorch default.

Example:

    model = resnet(50, num_classes=1000, input_shape=(224, 224, 3))   # 25,557,032 params
"""
from typing import Optional

from eb_tf.models import common
from eb_tf.models.common import keras

LAYOUTS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
           50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
           152: ("bottleneck", (3, 8, 36, 3))}
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _shortcut(x, out_planes, stride, gamma_init, prefix):
    if stride == 1 and x.shape[-1] == out_planes:
        return x
    x = common.conv(x, out_planes, 1, strides=stride, name=f"{prefix}_downsample_conv")
    return common.bn(x, gamma_init, name=f"{prefix}_downsample_bn")


def _basic(x, planes, stride, gamma_init, prefix):
    residual = _shortcut(x, planes, stride, gamma_init, prefix)
    out = common.conv(x, planes, 3, strides=stride, name=f"{prefix}_conv1")
    out = common.relu(common.bn(out, gamma_init, name=f"{prefix}_bn1"), name=f"{prefix}_relu1")
    out = common.conv(out, planes, 3, name=f"{prefix}_conv2")
    out = common.bn(out, gamma_init, name=f"{prefix}_bn2")
    out = keras.layers.Add(name=f"{prefix}_add")([out, residual])
    return common.relu(out, name=f"{prefix}_out")


def _bottleneck(x, planes, stride, gamma_init, prefix):
    residual = _shortcut(x, planes * 4, stride, gamma_init, prefix)
    out = common.conv(x, planes, 1, name=f"{prefix}_conv1")
    out = common.relu(common.bn(out, gamma_init, name=f"{prefix}_bn1"), name=f"{prefix}_relu1")
    out = common.conv(out, planes, 3, strides=stride, name=f"{prefix}_conv2")
    out = common.relu(common.bn(out, gamma_init, name=f"{prefix}_bn2"), name=f"{prefix}_relu2")
    out = common.conv(out, planes * 4, 1, name=f"{prefix}_conv3")
    out = common.bn(out, gamma_init, name=f"{prefix}_bn3")
    out = keras.layers.Add(name=f"{prefix}_add")([out, residual])
    return common.relu(out, name=f"{prefix}_out")


def resnet(depth: int = 50, num_classes: int = 1000, input_shape=(224, 224, 3),
           width: float = 1.0, gamma_init: float = 1.0, name: Optional[str] = None):
    """An ImageNet-layout ResNet as a functional tf_keras model (logits out).

    Args:
      depth: 18, 34, 50, 101 or 152.
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels), any size.
      width: multiplies every conv's channels (stem and the 64/128/256/512 planes),
        rounded half up, at least 1.
      gamma_init: the BN gammas' initial value (1.0 as torchvision).
      name: the model's name (default `resnet{depth}`).

    Returns:
      A `keras.Model`: `conv1`, `bn1`, `relu1`, `maxpool`,
      `layer{s}_block{b}_{conv1,bn1,...,downsample_conv,downsample_bn,add,out}`,
      `avgpool`, `fc`.

    Raises:
      ValueError: for an unknown depth or a bad width/input shape.

    Example:

        model = resnet(18, num_classes=100, input_shape=(64, 64, 3), width=0.5)
    """
    where = "eb_tf.models.resnet"
    if depth not in LAYOUTS:
        raise ValueError(f"{where}: depth must be one of {sorted(LAYOUTS)}, got {depth!r}.")
    width = common.check_width(width, where)
    input_shape, num_classes = common.check_input(input_shape, num_classes, where)
    block, counts = LAYOUTS[depth]
    make = _basic if block == "basic" else _bottleneck
    inputs = keras.Input(shape=input_shape, name="input")
    x = common.conv(inputs, common.scaled(64, width), 7, strides=2, name="conv1")
    x = common.relu(common.bn(x, gamma_init, name="bn1"), name="relu1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        for b in range(count):
            stride = 2 if (stage > 1 and b == 0) else 1
            x = make(x, common.scaled(planes, width), stride, gamma_init,
                     f"layer{stage}_block{b + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = common.torch_linear(x, num_classes, name="fc")
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")
