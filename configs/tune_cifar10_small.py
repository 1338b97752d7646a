r"""python -m binaries.eb_tune --config=configs/tune_cifar10_small.py --workdir=/tmp/eb_tune_c10

Expected run time: about 8 minutes on 2 CPU cores (one shared EB search of about 14
epochs, then 5 tickets retrained for 2 epochs each); another budget on the same
workdir (`--config.max_flops=4e6`) reuses that search and takes about a minute.
Chooses p for `configs/cifar10_small.py` (VGG-16 width 0.25 on 10,000 images of the
shared CIFAR-10, T = 20; the dense net has 19.6M per-sample FLOPs) under a budget of
8M FLOPs, among p = 0.3 ... 0.7; scores are validation accuracies, never test.
Then train the chosen setting with
`python -m binaries.eb_train --config=/tmp/eb_tune_c10/chosen_config.py --workdir=RUN`.

Tuning config: cifar10_small with ratios='auto', a FLOPs budget and a `tune` section.
"""
from configs import cifar10_small
from eb_tf.pipeline import config as eb_config
from eb_tf.tuning import config as tuning_config


def get_config(arg=None):
    cfg = cifar10_small.get_config()
    cfg.ratios = ("auto",)
    cfg.max_flops = 8e6
    cfg.tune = tuning_config.default_tune_config()
    cfg.tune.ratios = (0.3, 0.4, 0.5, 0.6, 0.7)
    cfg.tune.oracle = "grid"
    cfg.tune.retrain_epochs = 2
    return eb_config.apply_arg(cfg, arg)
