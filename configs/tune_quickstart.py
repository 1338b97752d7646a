r"""python -m binaries.eb_tune --config=configs/tune_quickstart.py --workdir=/tmp/eb_tune

Expected run time: about 3 minutes on 2 CPU cores (smoke variant
`configs/tune_quickstart.py:smoke`: about 1 minute). Chooses p for the quickstart
(`convnet` on the embedded digits, T = 30) under a budget of 300,000 per-sample FLOPs
(the dense net has about 2.4M): one shared EB search tracks p = 0.3 ... 0.9 at once,
each ticket is drawn, retrained for 2 epochs and scored on the validation split.
Then train the chosen setting with
`python -m binaries.eb_train --config=/tmp/eb_tune/chosen_config.py --workdir=/tmp/eb_tuned`
(or in one go: `eb_train --config=configs/tune_quickstart.py`, which tunes in WORKDIR/tune).

Tuning config: the quickstart with ratios='auto', a FLOPs budget and a `tune` section.
"""
from configs import quickstart
from eb_tf.pipeline import config as eb_config
from eb_tf.tuning import config as tuning_config


def get_config(arg=None):
    cfg = quickstart.get_config()
    cfg.verbose = 0
    cfg.ratios = ("auto",)
    cfg.max_flops = 300000.0
    cfg.tune = tuning_config.default_tune_config()
    cfg.tune.ratios = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    cfg.tune.oracle = "grid"
    cfg.tune.retrain_epochs = 2
    if arg == "smoke":  # two candidates, one over budget; `smoke` shrinks the rest (width
        cfg.tune.ratios = (0.5, 0.9)  # 0.25: the dense net has about 150,000 FLOPs)
        cfg.tune.retrain_epochs = 1
        cfg.max_flops = 20000.0
    return eb_config.apply_arg(cfg, arg)
