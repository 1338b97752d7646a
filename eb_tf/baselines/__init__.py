"""The paper's other channel pruners: SNIP at initialisation and ThiNet after training.

Both return `{BN key: bool mask}` dicts that `eb_tf.prune` turns into smaller models,
like network slimming's `eb_tf.channel_masks`; the pipeline's `snip` and `thinet`
methods (`eb_tf.pipeline.baseline_methods`) call them in their draw phase.

Modules in import order: `reconstruction` (ThiNet's greedy choice and least-squares
rescaling, pure NumPy), `contributions` (the next layer of each BN and its sampled
input contributions), `thinet` (`thinet_masks`) and `snip` (`channel_scores`,
`snip_masks`). They use `eb_tf.sparsity` and `eb_tf.pruning` and nothing above them.

Example:

    from eb_tf import baselines
    at_init = baselines.snip_masks(model, 0.5, [(x[:128], y[:128])]).masks
    trained = baselines.thinet_masks(model, eb_tf.channel_masks(model, 0.5), [x[:256]])
    ticket = eb_tf.prune(trained.model, trained.masks)
"""
from eb_tf.baselines.reconstruction import (greedy_removal, least_squares_scales,
                                            reconstruction_error)
from eb_tf.baselines.snip import SnipResult, channel_scores, snip_masks
from eb_tf.baselines.thinet import ThinetResult, rescale_next_layers, thinet_masks

__all__ = ["snip_masks", "channel_scores", "SnipResult", "thinet_masks", "ThinetResult",
           "rescale_next_layers", "greedy_removal", "least_squares_scales",
           "reconstruction_error"]
