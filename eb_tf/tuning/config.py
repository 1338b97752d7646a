"""The `tune` section of a tuning config: candidates, oracle, trials; its validation.

A tuning config is a run config (`eb_tf.pipeline.config`) with `ratios=('auto',)` and a budget
(`max_flops` and/or `max_latency_ms`), plus an optional `tune` ConfigDict of
`TuneConfig` fields. Empty candidate tuples mean "the run config's value" (threshold,
l1, lr) or `DEFAULT_RATIOS` (p); `max_trials=0` means every combination once.

Example:

    from eb_tf.pipeline import config as eb_config
    from eb_tf.tuning import config as tuning_config
    cfg = eb_config.default_config()
    cfg.ratios, cfg.max_flops = ("auto",), 2e6
    cfg.tune = tuning_config.default_tune_config()      # ml_collections.ConfigDict
    cfg.tune.ratios, cfg.tune.oracle = (0.3, 0.5, 0.7), "bayesian"
    run_cfg, tune_cfg = tuning_config.split_config(cfg)
"""
import dataclasses
import difflib
import itertools
import math
from typing import Any, Dict, Optional, Tuple

import ml_collections

from eb_tf.compat import keras_tuner
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline.config import is_auto

__all__ = ["TuneConfig", "GridOracle", "DEFAULT_RATIOS", "ORACLES", "default_tune_config",
           "is_auto", "split_config"]

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORACLES = ("grid", "random", "bayesian")
LATENCY_MODES = ("float32", "float16", "dynamic", "int8")


def _f(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """Search space and search settings of a tuning run (see the module docstring)."""
    ratios: Tuple[float, ...] = _f((), "candidate pruning ratios p in (0, 1) (): DEFAULT_RATIOS")
    thresholds: Tuple[float, ...] = _f((), "candidate EB thresholds in (0, 1] (): the run's")
    strengths: Tuple[float, ...] = _f((), "candidate L1 strengths in [0, 1] (): the run's l1")
    lrs: Tuple[float, ...] = _f((), "candidate initial learning rates > 0 (): the run's lr")
    oracle: str = _f("grid", "grid (every combination) | random | bayesian")
    max_trials: int = _f(0, "trials in all (0: the number of combinations); may grow on resume")
    num_initial_points: int = _f(0, "bayesian: random trials before the GP (0: 3 x dims)")
    retrain_epochs: int = _f(2, "epochs each ticket is retrained (from its epoch t) before "
                                "its validation accuracy is measured")
    evaluate_infeasible: bool = _f(True, "also retrain tickets over budget (for the table)")
    latency_mode: str = _f("float32", "TFLite mode measured for max_latency_ms")
    latency_threads: int = _f(1, "interpreter threads of the latency measurement")
    latency_runs: int = _f(50, "timed batch-1 runs per ticket (median taken)")
    seed: int = _f(1, "oracle seed, >= 1 (keras-tuner reads 0 as 'random')")

    def __post_init__(self):
        for name in ("ratios", "thresholds", "strengths", "lrs"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, (int, float)) else tuple(value)
            for v in value:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                    _fail(name, value, "expected numbers")
            object.__setattr__(self, name, tuple(sorted({float(v) for v in value})))
        for r in self.ratios:
            if not 0 < r < 1:
                _fail("ratios", self.ratios, "each p must be in (0, 1)")
        if any(not 0 < t <= 1 for t in self.thresholds):
            _fail("thresholds", self.thresholds, "each must be in (0, 1] (a mask distance)")
        if any(not 0 <= s <= 1 for s in self.strengths):
            _fail("strengths", self.strengths, "each must be in [0, 1]")
        if any(not 0 < lr <= 10 for lr in self.lrs):
            _fail("lrs", self.lrs, "each must be in (0, 10]")
        for name, choices in (("oracle", ORACLES), ("latency_mode", LATENCY_MODES)):
            if getattr(self, name) not in choices:
                _fail(name, getattr(self, name), f"must be one of {', '.join(choices)}")
        for name, lo in (("max_trials", 0), ("num_initial_points", 0), ("retrain_epochs", 1),
                         ("latency_threads", 1), ("latency_runs", 1), ("seed", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                _fail(name, value, f"must be an int >= {lo}")
        if not isinstance(self.evaluate_infeasible, bool):
            _fail("evaluate_infeasible", self.evaluate_infeasible, "must be True or False")

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TuneConfig":
        """From a dict / ConfigDict; unknown fields raise with the closest known names."""
        values = values.to_dict() if isinstance(values, ml_collections.ConfigDict) \
            else dict(values)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            raise ValueError("unknown tune field(s) " + ", ".join(
                f"config.tune.{u}" + (f" (did you mean config.tune.{hints[u][0]}?)"
                                      if hints[u] else "") for u in unknown)
                + f"; known: {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def hashed_dict(self) -> dict:
        """The fields a resumed run must share (`max_trials` may grow)."""
        return {k: v for k, v in self.to_dict().items() if k != "max_trials"}

    def space(self, run: eb_config.RunConfig) -> Dict[str, Tuple[float, ...]]:
        """{"ratio", "threshold", "l1", "lr": candidate values}, defaults filled in."""
        return {"ratio": self.ratios or DEFAULT_RATIOS,
                "threshold": self.thresholds or (float(run.threshold),),
                "l1": self.strengths or (float(run.l1),), "lr": self.lrs or (float(run.lr),)}

    def make_oracle(self, space: Dict[str, Tuple[float, ...]]):
        """The keras-tuner oracle over `space` (`Choice`, or `Fixed` for one value).

        It maximises the objective `score` (validation accuracy, or the tuner's
        worst value for a candidate over budget).
        """
        hps = keras_tuner.HyperParameters()
        for name, values in space.items():
            if len(values) == 1:
                hps.Fixed(name, values[0])
            else:
                hps.Choice(name, list(values), ordered=True)
        trials = self.max_trials or math.prod(len(v) for v in space.values())
        common = dict(objective=keras_tuner.Objective("score", "max"), max_trials=trials,
                      seed=self.seed, hyperparameters=hps, allow_new_entries=False)
        if self.oracle == "grid":
            return GridOracle(**common)
        if self.oracle == "random":
            return keras_tuner.oracles.RandomSearchOracle(**common)
        return keras_tuner.oracles.BayesianOptimizationOracle(
            num_initial_points=self.num_initial_points or None, **common)


class GridOracle(keras_tuner.Oracle):
    """Every combination once, in order; resumable (its only state is `_tried_so_far`).

    keras-tuner 1.4.8's `GridSearchOracle` keeps its queue out of the saved state, so
    a reloaded one stops after the interrupted trial; this one does not.
    """

    def populate_space(self, trial_id):
        space = self.get_space().space
        grids = [hp.values if isinstance(hp, keras_tuner.engine.hyperparameters.Choice)
                 else [hp.value] for hp in space]
        for combo in itertools.product(*grids):
            values = {hp.name: v for hp, v in zip(space, combo)}
            if not self._duplicate(values):
                return {"status": "RUNNING", "values": values}
        return {"status": "STOPPED", "values": None}


def _fail(name, value, allowed):
    raise ValueError(f"config.tune.{name}={value!r} is invalid: {allowed}")


def default_tune_config() -> ml_collections.ConfigDict:
    """The `TuneConfig` defaults as a ConfigDict (the `tune` section of a config file)."""
    return ml_collections.ConfigDict(dataclasses.asdict(TuneConfig()))


def split_config(config, tune_config: Optional[TuneConfig] = None):
    """(RunConfig, TuneConfig) of a tuning config; `tune_config` overrides its section.

    Raises:
      ValueError: a bad field in either part, or a run config without `ratios='auto'`.
    """
    section = None
    if isinstance(config, eb_config.RunConfig):
        run = config
    else:
        values = config.to_dict() if isinstance(config, ml_collections.ConfigDict) \
            else dict(config)
        section = values.pop("tune", None)
        run = eb_config.from_config_dict(values)
    if run.ratios != eb_config.AUTO_RATIOS:
        raise ValueError(f"config.ratios={run.ratios!r}: tuning chooses p itself; set "
                         "config.ratios='auto' and a budget (config.max_flops or "
                         "config.max_latency_ms), and the candidates in config.tune.ratios")
    if tune_config is None:
        tune_config = TuneConfig.from_dict(section or {})
    elif not isinstance(tune_config, TuneConfig):
        tune_config = TuneConfig.from_dict(tune_config)
    return run, tune_config
