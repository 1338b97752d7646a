"""A small conv-BN-ReLU net for the embedded digits dataset and quickstarts.

VGG-style and slimming-ready: blocks of conv3x3 (no bias) - BN (gamma 0.5) - ReLU,
2x2 max-pools between stages, global average pooling and a linear classifier.
The default `(16, 16, "M", 32, 32, "M", 64, 64)` has six prunable BN layers and
about 2.4M multiply-adds on a 16x16x1 digit, so a full quickstart (search, draw,
retrain) takes a few CPU minutes.

Example:

    model = convnet(num_classes=10, input_shape=(16, 16, 1))
"""
from typing import Optional, Sequence

from eb_tf.models import vgg

DEFAULT_CFG = (16, 16, "M", 32, 32, "M", 64, 64)


def convnet(num_classes: int = 10, input_shape=(16, 16, 1), width: float = 1.0,
            cfg: Optional[Sequence] = None, gamma_init: float = 0.5,
            name: Optional[str] = None):
    """The quickstart conv net (logits out); layers are named as in `vgg.vgg`.

    Args:
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels); any size with room for the max-pools.
      width: multiplies every conv's channels, rounded half up, at least 1.
      cfg: conv widths and 'M' max-pools (default `DEFAULT_CFG`).
      gamma_init: the BN gammas' initial value.
      name: the model's name (default `convnet`).

    Returns:
      A `keras.Model` with layers `conv{i}`, `bn{i}`, `relu{i}`, `pool{j}`, `avgpool`, `fc`.

    Raises:
      ValueError: for a bad cfg, width or input shape.

    Example:

        model = convnet(10, (16, 16, 1), width=0.5)
    """
    return vgg.vgg(num_classes=num_classes, input_shape=input_shape, width=width,
                   cfg=DEFAULT_CFG if cfg is None else cfg, gamma_init=gamma_init,
                   name=name or "convnet")
