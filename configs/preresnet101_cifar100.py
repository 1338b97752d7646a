r"""python -m binaries.eb_train --config=configs/preresnet101_cifar100.py --workdir=/tmp/eb_prn101_c100

Expected run time: as `configs/preresnet101_cifar10.py` (an estimate, not measured here).

Pre-activation ResNet-101 (bottleneck) on CIFAR-100 (tfds), the paper's 160-epoch
setting: `configs/preresnet101_cifar10.py` with the other dataset.
"""
from configs import preresnet101_cifar10
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = preresnet101_cifar10.get_config()
    cfg.dataset = "cifar100"
    return eb_config.apply_arg(cfg, arg)
