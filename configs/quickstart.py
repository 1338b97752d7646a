r"""python -m binaries.eb_train --config=configs/quickstart.py --workdir=/tmp/eb_quickstart

Expected run time: about 1 minute on 2 CPU cores (measured: 33 s; EB ticket at epoch
10 of 30, test accuracy 0.986). The smoke variant `configs/quickstart.py:smoke` (or
`--config.smoke=True`) takes about 15-30 s and only checks the plumbing (4 epochs on 256
images, chance-level accuracy). scikit-learn's real 8x8 handwritten digits (1,797
images, upsampled to 16x16 by eb_tf.data) with eb_tf.models' `convnet`; the paper's
recipe (SGD 0.9, coupled weight decay 1e-4, L1 1e-4 on BN gammas, lr /10 at 50%/75% of
T, threshold 0.1 over 5 epochs) at a small budget T = 30, lr 0.05, batch 64.

Quickstart: EB Train of a small conv net on the embedded digits dataset (no download).
"""
from eb_tf.pipeline import config as eb_config


def get_config(arg=None):
    cfg = eb_config.default_config()
    cfg.dataset = "digits"
    cfg.model = "convnet"
    cfg.epochs = 30
    cfg.batch_size = 64
    cfg.lr = 0.05
    cfg.ratios = (0.5,)
    cfg.verbose = 2
    return eb_config.apply_arg(cfg, arg)
