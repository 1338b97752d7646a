r"""python -m binaries.eb_train --config=configs/preresnet101_cifar10.py --workdir=/tmp/eb_prn101_c10

Expected run time (an estimate, not measured here): 3-5 hours for eb on one modern
GPU; days on 2 CPU cores.
Paper setting (You et al., ICLR 2020): SGD momentum 0.9, coupled weight decay 1e-4,
L1 1e-4 on BN gammas, threshold 0.1 over 5 epochs, p in {0.3, 0.5, 0.7}. Choose a
baseline with --config.method=dense|ns|lt, a retrain mode with --config.retrain=reinit.

Pre-activation ResNet-101 (bottleneck) on CIFAR-10 (tfds), the paper's 160-epoch setting.
"""
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = eb_config.default_config()
    cfg.dataset = "cifar10"
    cfg.model = "preresnet101"
    cfg.ratios = (0.3, 0.5, 0.7)
    cfg.epochs = 160
    cfg.batch_size = 256
    cfg.lr = 0.1
    return eb_config.apply_arg(cfg, arg)
