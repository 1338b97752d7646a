r"""python -m binaries.eb_train --config=configs/resnet18_imagenet.py --workdir=/tmp/eb_r18

Expected run time (an estimate, not measured here): about a day on 8 modern GPUs for
the 90-epoch budget (eb less); not feasible on a CPU.
Paper setting (You et al., ICLR 2020): SGD momentum 0.9, coupled weight decay 1e-4,
L1 1e-4 on BN gammas, threshold 0.1 over 5 epochs, p in {0.3, 0.5, 0.7}. Choose a
baseline with --config.method=dense|ns|lt, a retrain mode with --config.retrain=reinit.

ResNet-18 on ImageNet (tfds imagenet2012; the
manual-download tar files go in <data_dir>/downloads/manual, set --config.data_dir).
"""
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = eb_config.default_config()
    cfg.dataset = "imagenet2012"
    cfg.model = "resnet18"
    cfg.ratios = (0.3, 0.5, 0.7)
    cfg.epochs = 90
    cfg.batch_size = 256
    cfg.lr = 0.1
    cfg.lr_milestones = (1 / 3, 2 / 3)   # /10 at epochs 30 and 60
    return eb_config.apply_arg(cfg, arg)
