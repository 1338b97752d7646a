"""`ChannelSelect`: keeps a fixed list of channels of the last axis (a gather).

The pruner places it where some consumers of a channel space read fewer channels than
the space holds: the residual stream of a pre-activation ResNet keeps a channel that
the BN in front of a branch masks, so the branch reads the stream through a
`ChannelSelect`. It is a plain, serialisable tf_keras layer (registered as
`eb_tf>ChannelSelect`, so `.keras` files load after `import eb_tf`) and converts to a
TFLite GATHER.

Example:

    import eb_tf
    from eb_tf.compat import keras

    x = keras.Input((8, 8, 4))
    y = eb_tf.ChannelSelect([0, 3])(x)      # shape (None, 8, 8, 2)
"""
from typing import Sequence

import numpy as np

from eb_tf.compat import keras, tf

__all__ = ["ChannelSelect"]


@keras.utils.register_keras_serializable(package="eb_tf")
class ChannelSelect(keras.layers.Layer):
    """Selects channels `indices` of the last axis: `tf.gather(x, indices, axis=-1)`.

    Args:
      indices: the input channels to keep, in output order (non-negative ints, at
        least one; repeats are allowed).
      **kwargs: the usual Layer arguments (`name`, `dtype`, ...).

    Example:

        sel = ChannelSelect([2, 0], name="pick")
        sel(tf.constant([[1.0, 2.0, 3.0]]))   # [[3.0, 1.0]]

    Raises:
      ValueError: for empty or negative `indices`, or (when built) an index not below
        the input's channel count.
    """

    def __init__(self, indices: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        values = np.asarray(indices)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"ChannelSelect {self.name!r}: `indices` must be a non-empty "
                             f"1-D list of channel numbers, got {indices!r}")
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"ChannelSelect {self.name!r}: `indices` must be integers, "
                             f"got dtype {values.dtype} ({indices!r})")
        if values.min() < 0:
            raise ValueError(f"ChannelSelect {self.name!r}: `indices` must be >= 0, got "
                             f"{int(values.min())}")
        self.indices = [int(i) for i in values]
        self.supports_masking = True

    def build(self, input_shape):
        channels = tf.TensorShape(input_shape)[-1]
        if channels is not None and max(self.indices) >= channels:
            raise ValueError(
                f"ChannelSelect {self.name!r}: index {max(self.indices)} is out of range "
                f"for an input with {channels} channels (allowed 0..{channels - 1})")
        super().build(input_shape)

    def call(self, inputs):
        return tf.gather(inputs, tf.constant(self.indices, dtype=tf.int32), axis=-1)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(shape[:-1] + [len(self.indices)])

    def get_config(self):
        config = super().get_config()
        config["indices"] = list(self.indices)
        return config
