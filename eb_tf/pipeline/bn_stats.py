"""Re-estimate a model's BatchNorm moving statistics on a fixed set of batches.

A drawn ticket keeps the moving means and variances its BN layers had in the dense
network, but pruning removed channels upstream of them: their inputs have other
statistics now, and in inference mode the ticket is at chance until training has moved
the averages. `recalibrate(model, batches)` fixes that with forward passes only:

- each batch runs through the model in training mode, so every BN normalises by its
  batch's statistics, as in the retrain's first step (no BN depends on the stale
  moving statistics);
- each trainable BN's moving mean and variance become the exact mean and population
  variance of its input over all the batches, per channel c,

      mean_c = (1/N) sum_j x_jc,      var_c = (1/N) sum_j (x_jc - mean_c)^2,

  j over the N = samples x positions elements of channel c in all batches (moments
  per batch in float32, pooled in float64 with Chan's update: an exact average over
  the batches, not a momentum-weighted one);
- nothing else changes: all weights are restored after the passes (kernels, gammas,
  betas, and the statistics of frozen BNs, which training does not update either).

Cost: one forward pass per sample, no backward: forward FLOPs per sample x samples.

Example:

    from eb_tf.pipeline import bn_stats
    bn_stats.recalibrate(ticket, splits.calibration_batches(16))
    # {"batches": 16, "samples": 1024, "layers": 4}
"""
import contextlib
from typing import Iterable, List

import numpy as np

from eb_tf.compat import tf
from eb_tf.sparsity import batchnorm

__all__ = ["recalibrate", "trained_bn_layers"]


def trained_bn_layers(model) -> list:
    """The BN layers whose moving statistics training updates (trainable ones), in layer
    order, nested models and wrappers included."""
    return [ref.layer for ref in batchnorm.bn_layers(model, include_frozen=True,
                                                     where="recalibrate")
            if ref.layer.trainable]


def recalibrate(model, batches: Iterable) -> dict:
    """Sets every trainable BN's moving mean/variance to its input's exact statistics.

    Args:
      model: a tf_keras or Keras 3 model (functional, Sequential, nested models),
        changed in place.
      batches: an iterable of input batches, or of (inputs, labels) tuples (the labels
        are ignored), e.g. `splits.calibration_batches(16)`.

    Returns:
      {"batches", "samples", "layers"}: what was seen and how many BNs were set.

    Raises:
      ValueError: `batches` is empty.
    """
    layers = trained_bn_layers(model)
    pooled: List[tuple] = [None] * len(layers)
    seen = {"batches": 0, "samples": 0}
    snapshot = model.get_weights()
    with _recording(layers) as records:
        forward = tf.function(lambda x: _forward(model, x, records))
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for index, count, mean, var in forward(x):
                i = int(index)
                pooled[i] = _pool(pooled[i], float(count), np.asarray(mean, np.float64),
                                  np.asarray(var, np.float64))
            seen["batches"] += 1
            seen["samples"] += int(tf.shape(x)[0])
    model.set_weights(snapshot)  # undo the momentum updates of the training-mode passes
    if not seen["batches"]:
        raise ValueError("recalibrate: `batches` yielded no batch")
    for layer, stats in zip(layers, pooled):
        if stats is None:  # a BN the forward pass never called (a dead branch)
            continue
        count, mean, m2 = stats
        for variable, value in ((layer.moving_mean, mean), (layer.moving_variance, m2 / count)):
            variable.assign(value.reshape(variable.shape).astype(   # a Keras 3 dtype is a str
                tf.as_dtype(variable.dtype).as_numpy_dtype))
    return {**seen, "layers": sum(s is not None for s in pooled)}


def _forward(model, x, records):
    """One training-mode pass; returns (layer index, elements per channel, mean, variance)
    of every recorded BN call."""
    del records[:]
    model(x, training=True)
    return [(tf.constant(i), count, mean, var) for i, count, mean, var in records]


def _moments(layer, inputs):
    x = tf.cast(inputs, tf.float32)
    rank = x.shape.rank
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]  # Keras 3: int
    kept = {a % rank for a in axes}
    mean, var = tf.nn.moments(x, [a for a in range(rank) if a not in kept])
    count = tf.cast(tf.size(x) // tf.maximum(tf.size(mean), 1), tf.float64)
    return count, mean, var


def _pool(stats, count, mean, var):
    """Chan's parallel update of (count, mean, sum of squared deviations)."""
    if stats is None:
        return count, mean, var * count
    n, m, m2 = stats
    total = n + count
    delta = mean - m
    return total, m + delta * (count / total), m2 + var * count + delta ** 2 * (n * count / total)


@contextlib.contextmanager
def _recording(layers):
    """While open, each call of `layers[i]` appends (i, *moments of its input) to the list
    it yields (inside the traced forward function, once per call)."""
    records = []

    def recorder(i, layer, original):
        def call(inputs, *args, **kwargs):
            records.append((i, *_moments(layer, inputs)))
            return original(inputs, *args, **kwargs)
        return call

    for i, layer in enumerate(layers):
        layer.call = recorder(i, layer, layer.call)
    try:
        yield records
    finally:
        for layer in layers:
            del layer.call  # back to the class's own call
