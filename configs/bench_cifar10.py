r"""python -m binaries.eb_bench --config=configs/bench_cifar10.py:small --workdir=/tmp/bench_small
python -m binaries.eb_bench --config=configs/bench_cifar10.py:table1 --workdir=/tmp/table1

Expected run time: `small` about 20-25 minutes on 2 CPU cores (measured: 22 min on 2
shared, busy cores, all six methods with their TFLite exports and the micro-benchmarks);
`smoke` about a minute (the test); `full` (the paper's protocol: VGG-16, all of
CIFAR-10, T = 160, p = 0.3/0.5/0.7; about 10 dense-run equivalents, tfmot once per p)
roughly 10-15 GPU-hours (an estimate, not measured here), weeks on a CPU. Subset with
`--config.methods=dense,eb`. `table1` an estimated 2.5-3 hours on 2 cores (see below).

The benchmark of eb_tf.bench: dense, ns, lt, snip, thinet, eb, eb_int8 and tfmot side
by side on one data pipeline (thinet fine-tunes a ticket of the dense run's network).
The dataset defaults to the shared real CIFAR-10 when it is there
(`../shared/data/cifar10-jpeg.npz` from the project root, or in the folder that
$EB_TF_SHARED_DATA names) or already decoded: `npz:~/.cache/eb_tf/cifar10.npz` (under
$EB_TF_CACHE when that is set), which the shared `cifar10_npz.py` (`config.data_prepare`)
decodes on the first run; else to scikit-learn's digits. `--config.dataset` takes any
dataset of the pipeline.

Profiles:
- `smoke`: digits, `convnet`, `config.SMOKE` (4 epochs, 256 images, window 2).
- `small`: VGG-16 width 0.25 on 5,000 CIFAR-10 training images, T = 20, batch 128,
  p = 0.5, validation/test on 2,048 images. On a schedule this short (40 steps per
  epoch, 800 in all) the EB masks only settle after the first lr decay at T/2:
  measured here (p = 0.3/0.5/0.7), t = 14 of 20 at lr 0.1 (batch 128 or 64) and at
  lr 0.03, and t = 14-16 with a large-lr search as in the paper's Appendix A.2 (lr
  0.4, 2 warm-up epochs), so large lr does not help at this scale; t/T = 70% stays
  far above the paper's 6-12.5% (T = 160, 196 steps per epoch). The profile keeps
  the paper's lr 0.1 schedule, threshold 0.1 and window 5, reports t/T as measured,
  and bench.md's notes give the FLOPs-predicted cost of the same ticket at t/T = 12.5%.
- `paper`: the paper's shape on a CPU: all 45,000 training images of the shared
  CIFAR-10 (5,000 validation, 10,000 test), VGG-16 width 0.25, batch 256, T = 60, the
  paper's recipe (lr 0.1, SGD 0.9, coupled wd 1e-4, L1 1e-4, decays at 50%/75%, eps
  0.1, window 5), p = 0.5, one seed, methods dense, ns, eb (any of the variants on
  request: eb_reinit, eb_int8, eb_lf = bf16 search, eb_ll = bf16 search and retrain,
  dense_bf16, ns_bf16; `--config.methods=dense_bf16,ns_bf16,eb_ll` is the same
  comparison in bf16 throughout). Validation and test are read whole (5,000 images per epoch: ~4% of an
  epoch's compute). Estimated 90-100 minutes on 2 cores (30 s per dense epoch
  measured before); the run resumes, so it may span sessions. `paper_smoke` is its
  smoke twin (digits, the methods of `paper`).
- `table1`: the paper's Table 1 (`config.study = "table1"`, eb_tf.bench.table1) on the
  `paper` profile's data, model and recipe: for lr 0.1 and the `large_lr` preset, one
  search to T that keeps every epoch's mask and weights, then the tickets of the EB
  epoch t, 2t, T/2 and T, each retrained from its drawn weights for
  `table1_retrain_epochs` (0 = T) epochs at lr 0.1, /10 at 50%/75%. Expected run time,
  an estimate (not measured): per schedule 60 search epochs x ~31 s = 31 min, and 3-4
  tickets x 60 epochs x ~0.45 x 31 s = 14 min each; about 2.5-3 hours for both on 2
  cores (`--config.table1_retrain_epochs=30` halves the tickets' part). It resumes
  (run in the background, across sessions). `table1_smoke`: its smoke twin (digits,
  `convnet`, T = 4; half a minute).
- `full`: the paper's protocol (configs/vgg16_cifar10.py defaults), for a GPU.
"""
import os

from eb_tf import bench
from eb_tf.data import cache
from eb_tf.pipeline import config as eb_config

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILES = ("smoke", "small", "paper", "paper_smoke", "table1", "table1_smoke", "full")
SMALL_METHODS = "dense,ns,lt,snip,thinet,eb,eb_int8,tfmot"
PAPER_METHODS = "dense,ns,eb"


def cifar10_npz() -> str:
    """The decoded shared CIFAR-10 in the eb_tf cache: ~/.cache/eb_tf/cifar10.npz."""
    return cache.cache_path(cache.CIFAR10_FILE)


def shared_cifar10_script() -> str:
    """The shared data's cifar10_npz.py decoder, or '' when the folder is absent.

    The folder is `../shared/data` from the project root, or $EB_TF_SHARED_DATA.
    """
    return cache.shared_cifar10_script(_ROOT)


def _default_dataset(cfg):
    script, npz = shared_cifar10_script(), cifar10_npz()
    if script or os.path.exists(npz):
        cfg.dataset, cfg.data_prepare = f"npz:{npz}", script
    else:
        cfg.dataset, cfg.model, cfg.lr = "digits", "convnet", 0.05


def get_config(arg=None):
    arg = arg or "small"
    if arg not in PROFILES:
        raise ValueError(f"config argument {arg!r} is not a profile; use "
                         f"configs/bench_cifar10.py:<{'|'.join(PROFILES)}>")
    cfg = eb_config.default_config()
    for name, (default, _) in bench.BENCH_FIELDS.items():
        cfg[name] = default
    cfg.model, cfg.ratios, cfg.verbose, cfg.tensorboard = "vgg16", (0.5,), 2, False
    if arg.startswith("table1"):
        cfg.study = "table1"  # eb_tf.bench.table1; the paper profile's data, model, recipe
    if arg in ("smoke", "paper_smoke", "table1_smoke"):
        cfg.dataset, cfg.model, cfg.lr = "digits", "convnet", 0.05
        cfg.verbose, cfg.step_steps, cfg.step_repeats, cfg.eb_calls = 0, 2, 1, 3
        if arg == "paper_smoke":
            cfg.methods = PAPER_METHODS
        return eb_config.apply_arg(cfg, "smoke")
    if arg == "small":
        cfg.width, cfg.train_subset, cfg.epochs, cfg.batch_size = 0.25, 5000, 20, 128
        cfg.eval_batches, cfg.methods = 16, SMALL_METHODS
        _default_dataset(cfg)
        return cfg
    if arg in ("paper", "table1"):
        # All 45k training images, T = 60 at batch 256 (176 steps per epoch): the first
        # decay (epoch 30) well after the ticket (p = 0.5 emerged at 15 with T = 56).
        cfg.width, cfg.epochs, cfg.batch_size, cfg.eval_batches = 0.25, 60, 256, 0
        cfg.methods = PAPER_METHODS
        _default_dataset(cfg)
        return cfg
    cfg.ratios = (0.3, 0.5, 0.7)  # full: the paper's protocol
    cfg.step_batch, cfg.step_steps, cfg.step_repeats = 256, 20, 5
    _default_dataset(cfg)
    return cfg
