r"""python -m binaries.eb_train --config=configs/cifar10_small.py --workdir=/tmp/eb_c10

Expected run time: about 5 minutes on 2 CPU cores for `eb` (`dense` about 6, `ns` about
11; pass --config.method=dense|ns). The shared data is CIFAR-10 stored as JPEG
(../shared/data/README, or the folder named by $EB_TF_SHARED_DATA); the first run
decodes it once (~5 s, its `cifar10_npz.py`; or `python -m eb_tf.data.cache cifar10`)
in the keras.datasets layout into the eb_tf cache, read here as `npz:~/.cache/eb_tf/cifar10.npz` (`$EB_TF_CACHE/cifar10.npz` when
EB_TF_CACHE is set; `--config.dataset=npz:PATH` reads another copy). Reduced: width
0.25, 10,000 training images, T = 20 epochs, batch 128; otherwise the paper's recipe.

EB Train of a width-0.25 VGG-16 on the shared real CIFAR-10, at reduced scale.
"""
from eb_tf.data import cache
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = eb_config.default_config()
    cfg.dataset = f"npz:{cache.cache_path(cache.CIFAR10_FILE)}"
    cfg.model = "vgg16"
    cfg.width = 0.25
    cfg.train_subset = 10000
    cfg.validation_fraction = 0.1
    cfg.epochs = 20
    cfg.batch_size = 128
    cfg.ratios = (0.5,)
    cfg.verbose = 2
    return eb_config.apply_arg(cfg, arg)
