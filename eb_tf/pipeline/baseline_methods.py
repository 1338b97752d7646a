"""The paper's other baselines as methods: `snip` and `thinet` (their records and draws).

Both are pipeline methods (search, draw, retrain, export, in eb_train and eb_bench);
what sets them apart is their record's `select`, the draw's channel choice, which calls
`eb_tf.baselines` on the run's data:

- `snip` (Lee et al. 2019, at channel level as the Early-Bird paper applies it): the
  search trains nothing (`draws_at_init`); the draw scores every channel of the initial
  network by |dL/dm_c| of a gate after its BN, summed over `config.snip_batches`
  training batches (`calibration_batches`: fixed, un-augmented), and keeps a global
  mask at p with `config.min_channels` (`config.scope`); the ticket trains T epochs
  from the initial weights. Predicted cost r + s.
- `thinet` (Luo et al. 2017): the search is the dense run (T epochs, no L1; the
  benchmark copies the `dense` run's, `search_as`); the draw keeps per BN as many
  channels as the network-slimming mask of that network at p (`channel_masks`, rounded
  like the ticket with `config.round_multiple`), chosen greedily by the next layer's
  reconstruction error on `config.thinet_images` training images (10 sampled entries
  each), with the next kernel rescaled by least squares; BNs feeding an Add, a
  Concatenate or several layers keep the NS choice. The ticket is fine-tuned T
  epochs. Predicted cost 1 + r + s.

s is the scoring passes' FLOPs in units of the dense run (`Choice.flops`: SNIP's
forward + backward passes, 3 x forward FLOPs per image; ThiNet's one forward pass). Both
methods train without L1 on the gammas (search and retrain: `search_l1=False`).

Example:

    from eb_tf import pipeline
    cfg = pipeline.default_config()
    cfg.dataset, cfg.model, cfg.epochs, cfg.method = "digits", "convnet", 20, "thinet"
    report = pipeline.run(cfg, "/tmp/thinet_run")
    report["ticket"]["0.5"]["scoring"]          # flops, samples, seconds, x_dense
"""
import numpy as np

from eb_tf.baselines import snip, thinet
from eb_tf.pipeline import methods, trainer, widths
from eb_tf.pruning.flops import count_flops
from eb_tf.sparsity.batchnorm import channel_masks

__all__ = ["select_snip", "select_thinet", "SNIP", "THINET"]


def select_snip(cfg, model, ratio, splits) -> methods.Choice:
    """SNIP's channels of `model` (the initial network) at pruning ratio `ratio`."""
    result = snip.snip_masks(model, ratio, splits.calibration_batches(cfg.snip_batches),
                             loss=trainer.training_loss(model, splits), scope=cfg.scope,
                             min_channels=cfg.min_channels)
    return methods.Choice(result.masks, model, 3 * count_flops(model).total * result.samples,
                          result.samples)


def _images(splits, count):
    """The first `count` images of `calibration_batches` (fixed order, no augmentation)."""
    left = count
    for x, _ in splits.calibration_batches(-(-count // splits.batch_size)):
        if left <= 0:
            break
        yield np.asarray(x)[:left]
        left -= int(x.shape[0])


def select_thinet(cfg, model, ratio, splits) -> methods.Choice:
    """ThiNet's channels of `model` (trained) at the NS ticket's per-layer widths."""
    reference = channel_masks(model, ratio, cfg.scope, cfg.min_channels)
    reference = widths.for_run(cfg, model, reference)[0]
    result = thinet.thinet_masks(model, reference, _images(splits, cfg.thinet_images),
                                 seed=cfg.seed)
    return methods.Choice(result.masks, result.model, count_flops(model).total * result.samples,
                          result.samples)


SNIP = methods.register(methods.Method(
    "snip", "channel-level SNIP: score the channels of the initial network by |dL/dm| of a "
    "gate after each BN (snip_batches batches), prune at p, train the ticket T epochs",
    search_l1=False, draws_at_init=True, retrain="trained", select=select_snip,
    formula="r + s (s: the scoring passes)", marker="P"))
THINET = methods.register(methods.Method(
    "thinet", "ThiNet: the dense run (T epochs), per layer the NS ticket's width chosen by "
    "the next layer's reconstruction error (thinet_images images), least-squares "
    "rescaled, fine-tuned T epochs", search_l1=False, retrain="trained",
    select=select_thinet, search_as="dense", formula="1 + r + s (s: the scoring passes)",
    marker="h"))
