"""Choose the pruning ratio p under a FLOPs or latency budget, with keras-tuner.

The only sub-package that imports keras_tuner (which brings Keras 3 along); `import eb_tf`
loads it only when a name of it is first used (`eb_tf.tune`, `eb_tf.EBTuner`).
Modules in import order: `config` (`TuneConfig`, `is_auto`), `search` (one shared dense
search per (l1, lr)), `candidate` (draw and retrain one candidate), `report` (results
and the chosen config) and `tuner` (`EBTuner`, `tune`, `resolve_auto`).

Example:

    from eb_tf import tuning
    result = tuning.tune(cfg, "/tmp/eb_tune")        # cfg.ratios = "auto", cfg.max_flops = 3e5
    result.config.ratios
"""
from eb_tf.tuning.config import DEFAULT_RATIOS, TuneConfig, is_auto, split_config
from eb_tf.tuning.tuner import INFEASIBLE_SCORE, EBTuner, TuneResult, resolve_auto, tune

__all__ = ["EBTuner", "TuneConfig", "TuneResult", "tune", "resolve_auto", "is_auto",
           "DEFAULT_RATIOS", "INFEASIBLE_SCORE", "split_config"]
