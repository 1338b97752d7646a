"""SNIP (Lee et al., ICLR 2019) at channel level, as the Early-Bird paper applies it.

At initialisation, put a gate m_c = 1 on every channel after each BatchNorm, score each
channel by the magnitude of the loss gradient with respect to its gate, |dL/dm_c|,
summed over N training batches, and keep the channels of the largest scores (one global
threshold, `eb_tf.masks_from_gammas` with the scores as its |gamma|).

No gate layer is inserted: a gate after BN scales the BN output y = gamma x_hat + beta,
so at m = 1

    dL/dm_c = sum over batch and positions of dL/dy_c * y_c
            = gamma_c dL/dgamma_c + beta_c dL/dbeta_c,

read from one gradient of the loss with respect to the BN parameters per batch. The
forward passes run in training mode (batch statistics, as at the first step of
training); the BN moving statistics they update are restored afterwards, so the
model leaves `channel_scores` unchanged. The loss is the data loss (regularisers
excluded).

Example:

    from eb_tf.baselines import snip
    scores = snip.channel_scores(model, splits.calibration_batches(10))
    result = snip.snip_masks(model, 0.5, splits.calibration_batches(10))
    ticket = eb_tf.prune(model, result.masks)
"""
import dataclasses
from typing import Callable, Dict, Iterable, Optional

import numpy as np

from eb_tf.compat import check_tf_keras_model, keras, tf
from eb_tf.sparsity import masks as masks_lib
from eb_tf.sparsity.batchnorm import bn_layers

__all__ = ["SnipResult", "channel_scores", "snip_masks"]


@dataclasses.dataclass(frozen=True)
class SnipResult:
    """What `snip_masks` chose: `masks` ({BN key: bool, True = keep}), the `scores`
    they were drawn from, and the `samples` (training images) scored."""
    masks: Dict[str, np.ndarray]
    scores: Dict[str, np.ndarray]
    samples: int


def _scores(model, batches, loss):
    """(scores as in `channel_scores`, images scored)."""
    check_tf_keras_model(model, "eb_tf.baselines.snip.channel_scores")
    refs = bn_layers(model, where="eb_tf.baselines.snip.channel_scores")
    if not refs:
        raise ValueError(f"model {model.name!r} has no trainable BatchNormalization layer "
                         "with scale=True: SNIP gates the channels after each BN")
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gammas = [ref.layer.gamma for ref in refs]
    betas = [ref.layer.beta for ref in refs if ref.layer.beta is not None]
    moving = [v for ref in refs for v in (ref.layer.moving_mean, ref.layer.moving_variance)]
    saved = [v.numpy() for v in moving]
    totals = [np.zeros(int(ref.gamma.shape[0])) for ref in refs]
    images = 0
    try:
        for x, y in batches:
            with tf.GradientTape() as tape:
                tape.watch(gammas + betas)
                value = loss(y, model(x, training=True))
            d_gammas, d_betas = tape.gradient(value, (gammas, betas))
            d_betas = iter(d_betas)
            for total, ref, d_gamma in zip(totals, refs, d_gammas):
                gate = ref.layer.gamma * d_gamma   # dL/dm_c = gamma dL/dgamma + beta dL/dbeta
                if ref.layer.beta is not None:
                    gate += ref.layer.beta * next(d_betas)
                total += np.abs(gate.numpy().astype(np.float64))
            images += int(np.shape(x)[0])
    finally:
        for variable, value in zip(moving, saved):
            variable.assign(value)
    if not images:
        raise ValueError("batches is empty: give at least one (x, y) training batch")
    return {ref.key: total for ref, total in zip(refs, totals)}, images


def channel_scores(model, batches: Iterable,
                   loss: Optional[Callable] = None) -> Dict[str, np.ndarray]:
    """{BN key: sum over batches of |dL/dm_c|} of the gates after each candidate BN.

    Args:
      model: a tf_keras model with trainable BN layers (`eb_tf.bn_layers`), typically at
        initialisation; left unchanged (BN moving statistics restored).
      batches: (x, y) training batches; each gives one |dL/dm| term per channel.
      loss: `loss(y_true, y_pred) -> scalar`; default: sparse categorical cross-entropy
        on logits (the zoo models' output).

    Raises:
      ValueError: no candidate BN layer, or no batch.

    Example:
      >>> scores = channel_scores(model, [(x[:32], y[:32])])
      >>> scores["bn1"].shape                      # one score per channel
      (16,)
    """
    return _scores(model, batches, loss)[0]


def snip_masks(model, ratio: float, batches: Iterable, loss: Optional[Callable] = None,
               scope: str = "global", min_channels: int = 1) -> SnipResult:
    """SNIP's channel mask of `model` for pruning ratio `ratio`.

    The scores of `channel_scores` drawn like |gamma| (`eb_tf.masks_from_gammas`):
    exactly floor(ratio * N) lowest-score channels pruned, every BN keeping at least
    `min_channels`.

    Args:
      model: the model at initialisation (see `channel_scores`).
      ratio: the fraction of channels to prune, in (0, 1).
      batches: (x, y) training batches scored.
      loss: see `channel_scores`.
      scope: "global" (one threshold, the paper) or "layer".
      min_channels: channels every BN keeps at least.

    Example:
      >>> result = snip_masks(model, 0.5, [(x[:64], y[:64])])
      >>> ticket = eb_tf.prune(model, result.masks)
    """
    ratio = masks_lib.check_ratio(ratio)
    scores, images = _scores(model, batches, loss)
    masks = masks_lib.masks_from_gammas(scores, ratio, scope=scope, min_channels=min_channels)
    return SnipResult(masks, scores, images)
