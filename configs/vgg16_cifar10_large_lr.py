r"""python -m binaries.eb_train --config=configs/vgg16_cifar10_large_lr.py --workdir=/tmp/eb_vgg16_lr

Expected run time (an estimate, not measured here): as configs/vgg16_cifar10.py, roughly
2-3 GPU-hours on one modern GPU; days on 2 CPU cores.

The large-learning-rate variant of VGG-16 on CIFAR-10: the paper finds EB tickets
emerge early at large learning rates (its Appendix A.2 ablation). This config uses
eb_tf.pipeline.schedules.PRESETS["large_lr"]: lr0 = 0.5 with 5 linear warm-up epochs, /10 at 50%
and 75% of T = 160. These values are eb_tf's choice, not copied from the paper; compare
with configs/vgg16_cifar10.py (lr0 = 0.1) on the same seed.
"""
from configs import vgg16_cifar10
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import schedules


def get_config(arg=None):
    cfg = vgg16_cifar10.get_config()
    preset = schedules.PRESETS["large_lr"]
    cfg.lr = preset["lr"]
    cfg.lr_milestones = preset["milestones"]
    cfg.lr_decay = preset["decay"]
    cfg.warmup_epochs = preset["warmup_epochs"]
    return eb_config.apply_arg(cfg, arg)
