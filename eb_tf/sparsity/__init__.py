"""Sparsity: find the BN gammas, put L1 on them, turn them into masks, watch the masks settle.

Modules in import order: `masks` (pure NumPy: gammas -> masks, mask distance),
`batchnorm` (BN discovery, gammas, `channel_masks`), `regularizers` (`add_bn_l1`,
`add_weight_decay`) and `early_bird` (the `EarlyBird` callback). Nothing here imports
the pruner.

Example:

    from eb_tf import sparsity
    model = sparsity.add_bn_l1(model, strength=1e-4)
    bird = sparsity.EarlyBird(ratios=(0.5,), threshold=0.1, window=5)
    model.fit(data, epochs=160, callbacks=[bird])
"""
from eb_tf.sparsity.batchnorm import BNRef, bn_layers, channel_masks, gammas
from eb_tf.sparsity.early_bird import EarlyBird
from eb_tf.sparsity.masks import distance_matrix, mask_distance, masks_from_gammas
from eb_tf.sparsity.regularizers import add_bn_l1, add_weight_decay

__all__ = ["BNRef", "bn_layers", "gammas", "channel_masks", "add_bn_l1", "add_weight_decay",
           "masks_from_gammas", "mask_distance", "distance_matrix", "EarlyBird"]
