"""`ChannelSelect`: keeps a fixed list of channels of the last axis (a gather).

The pruner places it where some consumers of a channel space read fewer channels than
the space holds: the residual stream of a pre-activation ResNet keeps a channel that
the BN in front of a branch masks, so the branch reads the stream through a
`ChannelSelect`. It is a plain, serialisable tf_keras layer (registered as
`eb_tf>ChannelSelect`, so `.keras` files load after `import eb_tf`) and converts to a
TFLite GATHER. `Keras3ChannelSelect` is its Keras 3 twin (same arguments, also
registered as `eb_tf>ChannelSelect` in Keras 3's registry), which `eb_tf.prune` puts
into Keras 3 models; `channel_select_class(model)` picks the one for a model.

Example:

    import eb_tf
    from eb_tf.compat import keras

    x = keras.Input((8, 8, 4))
    y = eb_tf.ChannelSelect([0, 3])(x)      # shape (None, 8, 8, 2)
"""
from typing import Sequence

import numpy as np

from eb_tf.compat import is_keras3, keras, keras3, tf

__all__ = ["ChannelSelect", "Keras3ChannelSelect", "channel_select_class"]


def _check_indices(name, indices):
    values = np.asarray(indices)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"ChannelSelect {name!r}: `indices` must be a non-empty "
                         f"1-D list of channel numbers, got {indices!r}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"ChannelSelect {name!r}: `indices` must be integers, "
                         f"got dtype {values.dtype} ({indices!r})")
    if values.min() < 0:
        raise ValueError(f"ChannelSelect {name!r}: `indices` must be >= 0, got "
                         f"{int(values.min())}")
    return [int(i) for i in values]


def _check_range(name, indices, channels):
    if channels is not None and max(indices) >= channels:
        raise ValueError(
            f"ChannelSelect {name!r}: index {max(indices)} is out of range "
            f"for an input with {channels} channels (allowed 0..{channels - 1})")


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
        self.indices = _check_indices(self.name, indices)
        self.supports_masking = True

    def build(self, input_shape):
        _check_range(self.name, self.indices, tf.TensorShape(input_shape)[-1])
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


@keras3.saving.register_keras_serializable(package="eb_tf", name="ChannelSelect")
class Keras3ChannelSelect(keras3.layers.Layer):
    """`ChannelSelect` for Keras 3 models: `keras.ops.take(x, indices, axis=-1)`.

    Args:
      indices: the input channels to keep, in output order (non-negative ints, at
        least one; repeats are allowed).
      **kwargs: the usual Layer arguments (`name`, `dtype`, ...).

    Example:

        import keras
        sel = Keras3ChannelSelect([2, 0], name="pick")
        sel(keras.ops.convert_to_tensor([[1.0, 2.0, 3.0]]))   # [[3.0, 1.0]]

    Raises:
      ValueError: as `ChannelSelect`.
    """

    def __init__(self, indices: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.indices = _check_indices(self.name, indices)
        self.supports_masking = True

    def build(self, input_shape):
        _check_range(self.name, self.indices, tuple(input_shape)[-1])

    def call(self, inputs):
        return keras3.ops.take(inputs, np.asarray(self.indices, dtype=np.int32), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (len(self.indices),)

    def get_config(self):
        config = super().get_config()
        config["indices"] = list(self.indices)
        return config


def channel_select_class(model) -> type:
    """The gather layer class for `model`'s Keras: `ChannelSelect` or its Keras 3 twin.

    Example:

        gather = channel_select_class(model)([0, 3], name="pick")
    """
    return Keras3ChannelSelect if is_keras3(model) else ChannelSelect
