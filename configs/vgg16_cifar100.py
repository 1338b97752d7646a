r"""python -m binaries.eb_train --config=configs/vgg16_cifar100.py --workdir=/tmp/eb_vgg16_c100

Expected run time: as `configs/vgg16_cifar10.py` (an estimate, not measured here).

VGG-16 (network-slimming CIFAR variant) on CIFAR-100 (tfds), the paper's 160-epoch
setting: `configs/vgg16_cifar10.py` with the other dataset.
"""
from configs import vgg16_cifar10
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = vgg16_cifar10.get_config()
    cfg.dataset = "cifar100"
    return eb_config.apply_arg(cfg, arg)
