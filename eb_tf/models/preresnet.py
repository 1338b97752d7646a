"""Pre-activation ResNets for CIFAR (He et al. 2016), as network slimming builds them.

Bottleneck (`block="bottleneck"`, depth 9n+2: 56, 101, 164) follows
`Eric-mingjie/network-slimming/models/preresnet.py`: conv3x3(16), then three stages
of n bottlenecks BN-ReLU-conv1x1(p)-BN-ReLU-conv3x3(p, stride)-BN-ReLU-conv1x1(4p)
with p = 16, 32, 64, the first block of each stage adding a 1x1 (strided) conv
shortcut on its raw input; then BN-ReLU, global average pooling (the reference's
`AvgPool2d(8)` on 8x8), linear. Basic blocks (`block="basic"`, depth 6n+2: 20, 56,
110) are BN-ReLU-conv3x3-BN-ReLU-conv3x3 with planes 16, 32, 64 and the same
shortcut rule. The reference's `channel_selection` layers are not built here: the
pruner gathers channels when it draws a ticket. Init as the reference: conv
normal(0, sqrt(2/n)), BN gamma 0.5, beta 0, linear PyTorch default. Strided convs
use TF 'same' padding (PyTorch pads 1 on both sides; shapes and parameters agree).

Example:

    model = preresnet(164, num_classes=10)                      # 1.7M parameters
    small = preresnet(20, num_classes=10, block="basic", width=0.5)
"""
from typing import Optional

from eb_tf.models import common
from eb_tf.models.common import keras

EXPANSION = {"bottleneck": 4, "basic": 1}
_PER_BLOCK = {"bottleneck": 9, "basic": 6}


def _bottleneck(x, planes, stride, shortcut, gamma_init, prefix):
    residual = x
    out = common.bn(x, gamma_init, name=f"{prefix}_bn1")
    out = common.relu(out, name=f"{prefix}_relu1")
    out = common.conv(out, planes, 1, name=f"{prefix}_conv1")
    out = common.bn(out, gamma_init, name=f"{prefix}_bn2")
    out = common.relu(out, name=f"{prefix}_relu2")
    out = common.conv(out, planes, 3, strides=stride, name=f"{prefix}_conv2")
    out = common.bn(out, gamma_init, name=f"{prefix}_bn3")
    out = common.relu(out, name=f"{prefix}_relu3")
    out = common.conv(out, shortcut[0], 1, name=f"{prefix}_conv3")
    if shortcut[1]:
        residual = common.conv(x, shortcut[0], 1, strides=stride, name=f"{prefix}_downsample")
    return keras.layers.Add(name=f"{prefix}_add")([out, residual])


def _basic(x, planes, stride, shortcut, gamma_init, prefix):
    residual = x
    out = common.bn(x, gamma_init, name=f"{prefix}_bn1")
    out = common.relu(out, name=f"{prefix}_relu1")
    out = common.conv(out, planes, 3, strides=stride, name=f"{prefix}_conv1")
    out = common.bn(out, gamma_init, name=f"{prefix}_bn2")
    out = common.relu(out, name=f"{prefix}_relu2")
    out = common.conv(out, shortcut[0], 3, name=f"{prefix}_conv2")
    if shortcut[1]:
        residual = common.conv(x, shortcut[0], 1, strides=stride, name=f"{prefix}_downsample")
    return keras.layers.Add(name=f"{prefix}_add")([out, residual])


def preresnet(depth: int = 164, num_classes: int = 10, input_shape=(32, 32, 3),
              width: float = 1.0, block: str = "bottleneck", gamma_init: float = 0.5,
              name: Optional[str] = None):
    """A pre-activation CIFAR ResNet as a functional tf_keras model (logits out).

    Args:
      depth: 9n+2 for `block="bottleneck"` (56, 101, 164), 6n+2 for `"basic"` (20, 56).
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels); any size (global average pooling).
      width: multiplies the stage widths 16/32/64 (and the stem), rounded half up,
        at least 1.
      block: "bottleneck" or "basic".
      gamma_init: the BN gammas' initial value (0.5 in the reference code).
      name: the model's name (default `preresnet{depth}` or `preresnet{depth}_basic`).

    Returns:
      A `keras.Model`: `conv1`, blocks `stage{s}_block{b}_{bn1,conv1,...,add}`, `bn`,
      `relu`, `avgpool`, `fc`.

    Raises:
      ValueError: for an unknown block, a depth not of the block's form, or a bad
        width/input shape.

    Example:

        model = preresnet(56, num_classes=100, block="bottleneck")
    """
    where = "eb_tf.models.preresnet"
    if block not in EXPANSION:
        raise ValueError(f"{where}: block must be one of {sorted(EXPANSION)}, got {block!r}.")
    per = _PER_BLOCK[block]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < per + 2 \
            or (depth - 2) % per:
        raise ValueError(f"{where}: depth must be {per}n+2 (n >= 1) for block={block!r}, "
                         f"e.g. {[per * n + 2 for n in (2, 6, 18)]}; got {depth!r}.")
    width = common.check_width(width, where)
    input_shape, num_classes = common.check_input(input_shape, num_classes, where)
    n = (depth - 2) // per
    make = _bottleneck if block == "bottleneck" else _basic
    inputs = keras.Input(shape=input_shape, name="input")
    x = common.conv(inputs, common.scaled(16, width), 3, name="conv1")
    in_planes = common.scaled(16, width)
    for stage, planes in enumerate((16, 32, 64), start=1):
        planes = common.scaled(planes, width)
        out_planes = planes * EXPANSION[block]
        for b in range(n):
            stride = 2 if (stage > 1 and b == 0) else 1
            needs_proj = stride != 1 or in_planes != out_planes
            x = make(x, planes, stride, (out_planes, needs_proj), gamma_init,
                     f"stage{stage}_block{b + 1}")
            in_planes = out_planes
    x = common.bn(x, gamma_init, name="bn")
    x = common.relu(x, name="relu")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = common.torch_linear(x, num_classes, name="fc")
    suffix = "" if block == "bottleneck" else "_basic"
    return keras.Model(inputs, outputs, name=name or f"preresnet{depth}{suffix}")
