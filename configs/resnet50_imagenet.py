r"""python -m binaries.eb_train --config=configs/resnet50_imagenet.py --workdir=/tmp/eb_r50

Expected run time (an estimate, not measured here): 2-3 days on 8 modern GPUs for
the 90-epoch budget (eb less); not feasible on a CPU.

ResNet-50 on ImageNet: `configs/resnet18_imagenet.py` (the paper's setting, tfds
imagenet2012 with the manual-download tar files in <data_dir>/downloads/manual) with
the deeper model.
"""
from configs import resnet18_imagenet
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = resnet18_imagenet.get_config()
    cfg.model = "resnet50"
    return eb_config.apply_arg(cfg, arg)
