"""ThiNet (Luo et al., ICCV 2017) as a channel pruner: prune by the next layer's reconstruction.

For each BatchNorm whose channels feed one next Conv2D/Dense through per-channel,
zero-preserving layers (`eb_tf.baselines.contributions.next_layers`), ThiNet keeps as
many channels as a reference mask (the network-slimming mask at the same p, in the
pipeline) and chooses which by the next layer's reconstruction error on a sample of
training activations: `reconstruction.greedy_removal` over the sampled contributions,
then `reconstruction.least_squares_scales` rescales the next layer's kernel on the
kept input channels. A BN without such a next layer (its output feeds an Add, a
Concatenate, several consumers...) keeps the reference mask as it is.

Every layer's choice is made from the unpruned network's activations, in one forward
pass over the sample (as if each layer were pruned alone); the fine-tuning that follows
in the pipeline absorbs the interaction between layers. The result is a mask dict for
`eb_tf.prune` and a copy of the model with the rescaled kernels, so that

    prune(result.model, result.masks)(x) ~= apply_masks(result.model, result.masks)(x)

Example:

    from eb_tf.baselines import thinet
    ns = eb_tf.channel_masks(model, 0.5)
    result = thinet.thinet_masks(model, ns, [x_train[:256]], points=10, seed=0)
    ticket = eb_tf.prune(result.model, result.masks)
"""
import dataclasses
from typing import Dict, Iterable, Mapping, Tuple

import numpy as np

from eb_tf.baselines import contributions, reconstruction
from eb_tf.compat import check_tf_keras_model, keras

__all__ = ["ThinetResult", "thinet_masks", "rescale_next_layers", "POINTS_PER_IMAGE"]

POINTS_PER_IMAGE = 10  # sampled output entries per image (Luo et al.)


@dataclasses.dataclass(frozen=True)
class ThinetResult:
    """What `thinet_masks` chose.

    Attributes:
      masks: {BN key: bool array, True = keep}, the keys of the reference mask.
      model: a copy of the model whose next-layer kernels are rescaled (prune this one).
      chosen: the BN keys chosen by reconstruction (the others kept the reference mask).
      errors: {chosen key: (error without rescaling, error with it)} on the sample.
      samples: the images the activations came from.
    """
    masks: Dict[str, np.ndarray]
    model: keras.Model
    chosen: Tuple[str, ...]
    errors: Dict[str, Tuple[float, float]]
    samples: int


def _error(x, keep, scales) -> float:
    residual = x.sum(axis=1) - x[:, keep] @ scales[keep]
    return float(residual @ residual)


def thinet_masks(model, reference: Mapping[str, np.ndarray], images: Iterable,
                 points: int = POINTS_PER_IMAGE, seed: int = 0,
                 rescale: bool = True) -> ThinetResult:
    """ThiNet's channel choice with the per-layer channel counts of `reference`.

    Args:
      model: a functional tf_keras model (trained), BN layers after its convolutions.
      reference: {BN key: bool mask} giving how many channels each BN keeps, and the
        channels themselves for BNs ThiNet cannot measure (e.g. `channel_masks`).
      images: batches of training images (eval view), run once in inference mode.
      points: sampled output entries of the next layer per image.
      seed: the sampling's seed.
      rescale: fit the least-squares scales of the kept channels (else all 1).

    Returns:
      A `ThinetResult`.

    Raises:
      ValueError: a reference key that is not a BN of the model, or no image.

    Example:
      >>> result = thinet_masks(model, eb_tf.channel_masks(model, 0.5), [x[:64]])
      >>> {k: int(m.sum()) for k, m in result.masks.items()}   # the reference's counts
      {'bn1': 9, 'bn2': 7}
    """
    check_tf_keras_model(model, "eb_tf.baselines.thinet.thinet_masks")
    nxt = contributions.next_layers(model)
    unknown = sorted(set(reference) - set(nxt))
    if unknown:
        raise ValueError(f"reference mask key {unknown[0]!r} is not a BN layer of model "
                         f"{model.name!r}; its BN keys are {sorted(nxt)}")
    batches = [np.asarray(b) for b in images]
    samples = int(sum(b.shape[0] for b in batches))
    if not samples:
        raise ValueError("images is empty: give at least one batch of training images")
    wanted = {k: op for k, op in nxt.items() if k in reference and op is not None}
    for key, op in wanted.items():
        width = op.node.keras_inputs[0].shape[-1]
        if np.size(reference[key]) != width:
            raise ValueError(f"reference mask {key!r} has {np.size(reference[key])} entries "
                             f"but the BN has {width} channels; draw it from this model")
    parts = contributions.sample(model, wanted, batches, points, seed)
    masks, scales, errors = {}, {}, {}
    for key, ref in reference.items():
        ref = np.asarray(ref, dtype=bool)
        if key not in parts:
            masks[key] = ref.copy()
            continue
        keep = np.ones(ref.size, dtype=bool)
        keep[reconstruction.greedy_removal(parts[key], int(ref.size - ref.sum()))] = False
        masks[key] = keep
        fitted = reconstruction.least_squares_scales(parts[key], keep) \
            if rescale and not keep.all() else np.ones(ref.size, np.float32)
        scales[key] = fitted
        errors[key] = (_error(parts[key], keep, np.ones(ref.size)),
                       _error(parts[key], keep, fitted.astype(np.float64)))
    return ThinetResult(masks, rescale_next_layers(model, wanted, scales), tuple(parts),
                        errors, samples)


def rescale_next_layers(model, next_by_key, scales: Mapping[str, np.ndarray]):
    """A copy of `model` whose next layer of each key has its input channels scaled.

    Args:
      model: the model `next_by_key` was found in.
      next_by_key: {BN key: the next Conv2D/Dense op} (`contributions.next_layers`).
      scales: {BN key: (channels,) scales}; input channel c of the key's next layer
        has its kernel slice multiplied by scales[c].

    Example:
      >>> rescaled = rescale_next_layers(model, contributions.next_layers(model),
      ...                                {"bn1": np.array([1.0, 0.5, 2.0])})
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for key, factor in scales.items():
        layer = copy.get_layer(next_by_key[key].layer.name)
        weights = layer.get_weights()
        axis = 2 if weights[0].ndim == 4 else 0   # Conv2D (kh, kw, C, D); Dense (C, D)
        shape = [1] * weights[0].ndim
        shape[axis] = -1
        weights[0] = weights[0] * np.asarray(factor, weights[0].dtype).reshape(shape)
        layer.set_weights(weights)
    return copy
