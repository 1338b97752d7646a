"""Which BatchNormalization kernel a ticket's layers run: fused, or unfused at odd widths.

tf_keras' BatchNormalization runs oneDNN's fused kernel (`FusedBatchNormV3`) whenever it
can. That kernel is fast only at channel counts that are a multiple of 8 (fp32) or 16
(bf16); elsewhere the unfused one (moments, then elementwise ops) is 2-3x faster.
Measured at batch 128, forward and gradients, ms (an AMD EPYC, 2 cores):

| shape (H, C) | fused fp32 | unfused fp32 | fused bf16 | unfused bf16 |
| --- | ---: | ---: | ---: | ---: |
| 32, 29 | 46.2 | 18.9 | 55.9 | 26.3 |
| 32, 32 | 7.5 | 18.7 | 6.9 | 25.8 |
| 16, 45 | 16.9 | 7.4 | 17.5 | 9.9 |
| 16, 48 | 3.3 | 8.3 | 2.9 | 7.0 |

So a ticket whose widths cannot all be rounded (`widths.MAX_FLOPS_GROWTH` keeps it near
the exact mask) trains faster with `fused=False` on the BNs at odd widths. The per-layer
latency table (`eb_tf.pipeline.layer_latency`) times both kernels; `unfuse` sets the
chosen ones. The two kernels compute the same function with the same weights (they
differ by float rounding), so the ticket stays the ticket; the unfused ones are
`UnfusedBatchNormalization` layers, so the choice is saved in the `.keras` file and
survives a resume. Keras 3's BatchNormalization has a single
(unfused) kernel: nothing to choose there.

Example:

    ticket = eb_tf.prune(model, masks)
    ticket = bn_kernel.unfuse(ticket, ["block3_bn", "block4_bn"])
"""
from typing import Iterable

from eb_tf.compat import is_keras3, keras
from eb_tf.sparsity import regularizers

__all__ = ["UnfusedBatchNormalization", "can_unfuse", "unfuse"]


@keras.utils.register_keras_serializable(package="eb_tf")
class UnfusedBatchNormalization(keras.layers.BatchNormalization):
    """tf_keras' BatchNormalization on its unfused kernel, saved as such.

    tf_keras leaves `fused` out of a BatchNormalization's config, so a `.keras` file
    would load it fused again; this class keeps the choice. Same arguments, weights and
    function as BatchNormalization (`eb_tf.prune`, `eb_tf.bn_layers` and the FLOPs
    count treat it as one).

    Example:

        bn = UnfusedBatchNormalization(name="block3_bn")   # fused=False, always
    """

    def __init__(self, **kwargs):
        kwargs["fused"] = False
        super().__init__(**kwargs)


def can_unfuse(layer) -> bool:
    """True for a tf_keras BatchNormalization whose kernel may be chosen (not synced,
    no renorm, no virtual batches: those never fuse)."""
    if is_keras3(layer) or type(layer) is not keras.layers.BatchNormalization:
        return False
    return not (layer.renorm or layer.virtual_batch_size or getattr(layer, "synchronized", False))


def unfuse(model, names: Iterable[str]):
    """A copy of `model` (weights copied) whose BatchNormalizations `names` run unfused
    (as `UnfusedBatchNormalization` layers).

    Args:
      model: a functional tf_keras model (a drawn ticket).
      names: names of top-level BatchNormalization layers of `model`; empty: `model`
        itself is returned.

    Raises:
      ValueError: a name that is not a BatchNormalization `can_unfuse` accepts.
    """
    names = set(names)
    if not names:
        return model
    layers = {layer.name: layer for layer in model.layers}
    for name in sorted(names):
        if name not in layers or not can_unfuse(layers[name]):
            raise ValueError(f"eb_tf.pruning.bn_kernel.unfuse: {name!r} is not a tf_keras "
                             f"BatchNormalization of model {model.name!r} whose kernel can "
                             "be chosen")

    pairs = []

    def clone(layer):
        if isinstance(layer, keras.Model):
            return layer                     # nested: `names` are top-level layers only
        cls = UnfusedBatchNormalization if layer.name in names else layer.__class__
        pairs.append((layer, cls.from_config(layer.get_config())))
        return pairs[-1][1]

    return regularizers.clone_with_weights(model, clone, pairs)
