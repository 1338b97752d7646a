"""Synchronized BatchNorm: batch statistics over the global batch under data parallelism.

With plain BatchNormalization each replica normalises with the mean and variance of
its own share of the batch, so the gammas (and the Early-Bird masks drawn from them)
depend on the number of devices. `sync_batchnorm(model)` rebuilds the model with every
BatchNorm synchronized (statistics all-reduced over the replicas), weights copied:
the gradients, gammas and tickets then match single-device training with the same
global batch, up to float rounding.

The layers become Keras's `SyncBatchNormalization`, which is
`BatchNormalization(synchronized=True)` as a class: the `synchronized` argument is not
part of `BatchNormalization.get_config()`, so it would silently vanish in every clone
(`add_bn_l1`, `add_weight_decay`, `prune`) and in every saved `.keras` file, while
the class survives them all (the pruner, FLOP counter and quantizer support it).
A Keras 3 model keeps its class: Keras 3's `BatchNormalization` has `synchronized` in
its config, so it survives clones and `.keras` files as an argument.

Example:

    with strategy.scope():
        model = eb_tf.sync_batchnorm(eb_tf.models.build("vgg16", 10, (32, 32, 3)))
"""
from eb_tf.compat import (BN_CLASSES, Keras3Functional, check_model, is_keras3_operation, keras,
                          keras3)
from eb_tf.sparsity import batchnorm, regularizers

__all__ = ["sync_batchnorm", "is_synchronized", "SyncBatchNormalization"]

SyncBatchNormalization = keras.layers.experimental.SyncBatchNormalization


def is_synchronized(layer) -> bool:
    """True for a BatchNorm layer that all-reduces its batch statistics over replicas."""
    return isinstance(layer, BN_CLASSES) and bool(getattr(layer, "synchronized", False))


def sync_batchnorm(model):
    """A copy of `model` whose every BatchNorm is synchronized across replicas.

    Under the default strategy (one replica) the layers compute the same statistics
    as before (as E[x^2] - E[x]^2, so outputs agree to float rounding). Weights, BN
    moving statistics, regularisers and trainable flags are kept; compile the result.
    Call it inside `strategy.scope()` and before quantizing the model.

    Args:
      model: a functional or Sequential model, tf_keras or Keras 3 (nested models are
        converted).

    Returns:
      A new model, or `model` itself if it has no unsynchronized BatchNorm.

    Example:
      >>> model = eb_tf.sync_batchnorm(model)
      >>> [type(l).__name__ for l in model.layers if "bn" in l.name][:1]
      ['SyncBatchNormalization']

    Raises:
      ValueError: a subclassed model, or a BatchNorm inside a wrapper
        (a quantized model: convert the float model first).
    """
    where = "eb_tf.sync_batchnorm"
    check_model(model, where)
    refs = batchnorm.bn_layers(model, include_frozen=True, where=where)
    if all(is_synchronized(r.layer) for r in refs):
        return model
    wrapped = [r.key for r in refs if r.wrapper is not None and not is_synchronized(r.layer)]
    if wrapped:
        raise ValueError(f"{where}: BatchNorm layers {wrapped} are inside wrappers (a "
                         "quantized or pruning-wrapped model); apply sync_batchnorm to the "
                         "float model before quantize_for_search / wrapping.")
    return _convert(model, where)


def _convert(model, where):
    if not isinstance(model, (keras.Sequential, keras3.Sequential, Keras3Functional)) and \
            not getattr(model, "_is_graph_network", False):
        raise ValueError(f"{where}: model {model.name!r} is a subclassed model "
                         f"({type(model).__name__}), which cannot be cloned; build it with "
                         "the functional API or keras.Sequential, or create its BatchNorm "
                         "layers with synchronized=True yourself.")
    pairs = []

    def clone_layer(layer):
        if isinstance(layer, (keras.Model, keras3.Model)):
            return _convert(layer, where)
        if is_keras3_operation(layer):      # keras.ops.add & co.: stateless
            return layer
        if isinstance(layer, keras3.layers.BatchNormalization) and not is_synchronized(layer):
            new = keras3.layers.BatchNormalization.from_config(
                dict(layer.get_config(), synchronized=True))
        elif isinstance(layer, BN_CLASSES) and not is_synchronized(layer):
            new = SyncBatchNormalization.from_config(layer.get_config())
        else:
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    return regularizers.clone_with_weights(model, clone_layer, pairs)
