"""Run configuration of EB Train: every option, its paper default, and its validation.

`RunConfig` is the one documented place for the defaults (You et al., ICLR 2020, and
the network-slimming code they build on): SGD with momentum 0.9, lr 0.1 divided by 10
at 50% and 75% of T = 160 epochs, batch 256, weight decay 1e-4 applied as PyTorch does
(coupled: an L2 penalty of wd/2 on all weights), L1 1e-4 on the BN gammas, p = 0.5,
mask-distance threshold 0.1 over a window of 5 epochs.

Configs are Python files with a `get_config(arg)` returning an ml_collections
`ConfigDict` (start from `default_config()`); binaries read them with `--config` and
override any field with `--config.field=value`. `from_config_dict` turns it into a
frozen, validated `RunConfig` before any training starts: a bad value raises a
`ValueError` naming the field, the value and what is allowed.

Example:

    from eb_tf.pipeline import config as eb_config
    cfg = eb_config.default_config()          # ml_collections.ConfigDict
    cfg.model, cfg.epochs, cfg.ratios = "vgg16", 40, (0.3, 0.5)
    run_cfg = eb_config.from_config_dict(cfg) # RunConfig, validated
    print(eb_config.config_hash(run_cfg))
"""
import dataclasses
import difflib
import hashlib
import json
from typing import Any, Dict, Mapping, Tuple, Union

import ml_collections

from eb_tf.pipeline import methods
from eb_tf.quantization.modes import RETRAIN_PRECISIONS, SEARCH_PRECISIONS

__all__ = ["RunConfig", "default_config", "from_config_dict", "config_hash", "describe",
           "apply_arg", "is_auto",
           "RETRAIN_MODES", "SEARCH_PRECISIONS", "RETRAIN_PRECISIONS",
           "EXPORT_MODES", "SMOKE", "UNHASHED_FIELDS", "AUTO_RATIOS"]

RETRAIN_MODES = ("inherit", "reinit", "rewind")
EXPORT_MODES = ("none", "float32", "float16", "dynamic", "int8")
SCOPES = ("global", "layer")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")  # eb_tf.distribute
LR_SCALINGS = ("none", "linear")
# `ratios=auto`: eb_tf.tuning chooses p (and threshold, l1, lr) under the budget.
AUTO_RATIOS = ("auto",)
# Fields that change what is printed or exported, not what is trained: a run folder
# resumes when only these differ.
UNHASHED_FIELDS = ("verbose", "tensorboard", "export",
                   "strategy",  # a run resumes on other devices
                   "strict")    # how warnings end a run, not what it trains


def _f(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """All options of an EB Train run (paper defaults). See `describe()` for help."""
    method: str = _f("eb", "a registered method (eb_tf.pipeline.methods): eb (EB Train) | dense "
                     "(no pruning) | ns (network slimming: T epochs with L1, prune, retrain "
                     "T) | lt (one-shot lottery ticket: T epochs, prune, rewind, retrain) | "
                     "snip (SNIP channels at init, train T) | thinet (T dense epochs, "
                     "ThiNet channels, fine-tune T)")
    model: str = _f("vgg16", "eb_tf.models name, 'keras:MobileNetV2', or 'pkg.module:fn'")
    keras_version: int = _f(2, "2 (tf_keras: every feature) | 3 (Keras 3, TensorFlow backend: "
                            "no int8/QAT search or retrain, no ratios=auto, no snip/thinet; "
                            "see README 'Keras versions')")
    width: float = _f(1.0, "channel width multiplier of the model, in (0, 4]")
    dataset: str = _f("cifar10", "eb_tf.data name: digits, cifar10, cifar100, imagenet2012, "
                      "any tfds name, npz:PATH, dir:PATH")
    data_dir: str = _f("", "tfds data_dir / manual ImageNet folder ('' = default)")
    validation_fraction: float = _f(0.1, "share of the training split held out, in [0, 1)")
    train_subset: int = _f(0, "train on the first N training examples (0 = all)")
    augment: bool = _f(True, "standard augmentation of the dataset (CIFAR: crop+flip)")
    eval_batches: int = _f(0, "evaluate on the first N batches of validation/test (0 = all)")
    seed: int = _f(0, "seed of init, data order and augmentation")
    deterministic: bool = _f(True, "tf op determinism (needed for bit-identical resume)")
    epochs: int = _f(160, "T: the whole training budget in epochs (search + retrain)")
    batch_size: int = _f(256, "training batch size: the GLOBAL batch, split over the "
                         "replicas of config.strategy")
    lr: float = _f(0.1, "initial learning rate (SGD)")
    lr_milestones: Tuple[float, ...] = _f((0.5, 0.75), "fractions of T where lr *= lr_decay")
    lr_decay: float = _f(0.1, "factor applied at each milestone, in (0, 1]")
    warmup_epochs: int = _f(0, "linear lr warm-up epochs (the large-lr variant uses it)")
    momentum: float = _f(0.9, "SGD momentum, in [0, 1)")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float = _f(1e-4, "coupled (PyTorch) weight decay: L2 of wd/2 on all weights")
    l1: float = _f(1e-4, "network-slimming L1 strength s on BN gammas (0 = off)")
    retrain_l1: bool = _f(True, "keep the L1 on gammas during retrain (as the reference)")
    ratios: Tuple[float, ...] = _f((0.5,), "pruning ratios p, each in (0, 1), or 'auto': "
                                   "eb_tf.tuning chooses p under max_flops/max_latency_ms")
    threshold: float = _f(0.1, "EB found when max mask distance in the window <= this")
    window: int = _f(5, "number of recent masks compared (FIFO), >= 2")
    scope: str = _f("global", "global (one |gamma| threshold) | layer (ratio per layer)")
    min_channels: int = _f(1, "channels kept at least per BN layer")
    keep_training: bool = _f(False, "search runs all T epochs even after the ticket (Fig. 1)")
    draw_epochs: Tuple[int, ...] = _f((), "also draw tickets at these epochs (Fig. 1)")
    round_multiple: Union[int, str] = _f(
        "auto", "ticket width multiple: auto (the fastest of 1/8/16/32, measured on this "
        "device at batch_size in the retrain's dtype; eb_tf.pipeline.widths) | none (the "
        "exact mask) | N (round kept widths up to a multiple of N)")
    round_max_flops_growth: float = _f(
        1.25, "round_multiple=auto: the ticket keeps at most this many times the exact "
        "mask's FLOPs (eb_tf.pipeline.widths.MAX_FLOPS_GROWTH; 0 = no limit)")
    snip_batches: int = _f(10, "snip: training batches (eval view) its |dL/dm| are summed on")
    thinet_images: int = _f(1000, "thinet: training images (eval view) whose activations it "
                            "samples, 10 next-layer entries each")
    retrain: str = _f("inherit", "eb only: inherit (weights of epoch t, lr from t) | reinit "
                      "(fresh init, T epochs) | rewind (weights and lr of rewind_epoch)")
    rewind_epoch: int = _f(0, "k for retrain=rewind and method=lt (0 = initialisation)")
    search_precision: str = _f("fp32", "fp32 | int8 | int8_wage | bf16 | fp16")
    retrain_precision: str = _f("fp32", "fp32 | int8 (QAT) | bf16 | fp16 (mixed precision, "
                                "fp32 master weights)")
    export: str = _f("none", "TFLite export at the end: none|float32|float16|dynamic|int8")
    verbose: int = _f(1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch")
    tensorboard: bool = _f(True, "write TensorBoard logs to WORKDIR/tb")
    # tf.distribute: see eb_tf/distribute/ and README "Scale out"
    strategy: str = _f("default", "tf.distribute strategy: default | mirrored (the GPUs of "
                       "one machine) | multi_worker (the TF_CONFIG cluster) | tpu")
    sync_bn: bool = _f(False, "synchronized BatchNorm (statistics of the global batch), so "
                       "that tickets match single-device training")
    lr_scaling: str = _f("none", "none | linear: lr x batch_size / 256 (Goyal et al.)")
    smoke: bool = _f(False, "shrink everything to seconds (tests); see config.SMOKE")
    max_flops: float = _f(0.0, "ratios=auto: budget of per-sample ticket FLOPs (0 = none)")
    max_latency_ms: float = _f(0.0, "ratios=auto: budget of TFLite batch-1 latency (0 = none)")
    strict: bool = _f(False, "fail (non-zero exit) after writing the report when the run "
                      "ends with health warnings: chance-level or collapsed accuracy, no "
                      "ticket before T, a 0-epoch retrain (eb_tf.pipeline.health); not "
                      "part of the run's identity")

    def __post_init__(self):
        if self.ratios in ("auto", ["auto"]):  # resolved by eb_tf.tuning
            object.__setattr__(self, "ratios", AUTO_RATIOS)
        multiple = self.round_multiple
        if isinstance(multiple, str) and multiple.strip().isdigit():   # from a flag
            multiple = int(multiple)
        if multiple == 0 and not isinstance(multiple, bool):           # 0.2's "off"
            multiple = "none"
        object.__setattr__(self, "round_multiple", multiple)
        for name in ("ratios", "lr_milestones", "draw_epochs"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = (value,)
            if isinstance(value, list):
                value = tuple(value)
            object.__setattr__(self, name, value)
        _validate(self)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


# `smoke=True` applies these (each a function of the configured value) so a whole run
# takes seconds: the quick-test switch of the configs.
SMOKE = {
    "epochs": lambda v: min(v, 4),
    "window": lambda v: 2,
    "train_subset": lambda v: min(v, 256) if v else 256,
    "batch_size": lambda v: min(v, 32),
    "eval_batches": lambda v: 2,
    "width": lambda v: min(v, 0.25),
    "warmup_epochs": lambda v: 0,
    "rewind_epoch": lambda v: min(v, 1),
    "draw_epochs": lambda v: tuple(e for e in v if e <= 4),
    "verbose": lambda v: min(v, 2),
}


def default_config() -> ml_collections.ConfigDict:
    """The paper defaults as a ConfigDict: the base every `configs/*.py` starts from.

    `round_multiple` takes a string or an int (`cfg.round_multiple = 16` and
    `--config.round_multiple=auto` both work).
    """
    cfg = ml_collections.ConfigDict(dataclasses.asdict(RunConfig()))
    cfg.round_multiple = ml_collections.FieldReference(cfg.round_multiple, field_type=object)
    return cfg


def apply_arg(cfg: ml_collections.ConfigDict, arg) -> ml_collections.ConfigDict:
    """Applies a config file's `:arg` (`configs/x.py:smoke`): "" / None or "smoke".

    A smoke profile also draws exact tickets (`round_multiple="none"`): on its tiny
    models the step times that "auto" compares are noise. Override it after loading
    (`--config.round_multiple=auto`) to run the measurement anyway.
    """
    if arg in (None, ""):
        return cfg
    if arg != "smoke":
        raise ValueError(f"config argument {arg!r} is not supported: use configs/<name>.py "
                         "or configs/<name>.py:smoke")
    cfg.smoke = True
    cfg.round_multiple = "none"
    return cfg


def describe() -> str:
    """One line per field: name, default and help (for `--helpfull`-style docs)."""
    return "\n".join(f"{f.name} = {f.default!r}: {f.metadata['help']}"
                     for f in dataclasses.fields(RunConfig))


def from_config_dict(cfg: Any) -> RunConfig:
    """Validates a ConfigDict (or dict / RunConfig) and returns the frozen `RunConfig`.

    Missing fields take their defaults; `smoke=True` applies `SMOKE`.

    Raises:
      ValueError: an unknown field (with the closest known names) or a bad value (the
        message names `config.<field>`, the value and the allowed range or choices).
    """
    if isinstance(cfg, RunConfig):
        values = dataclasses.asdict(cfg)
    elif isinstance(cfg, ml_collections.ConfigDict):
        values = cfg.to_dict()
    elif isinstance(cfg, Mapping):
        values = dict(cfg)
    elif type(cfg).__name__ == "_ErrorConfig":  # config_flags' stand-in for a failed load
        error = object.__getattribute__(cfg, "_error")
        raise ValueError(f"--config could not be loaded: {error}. Pass an existing config "
                         "file, e.g. --config=configs/quickstart.py")
    else:
        raise ValueError(f"config must be an ml_collections.ConfigDict or a dict, got "
                         f"{type(cfg).__name__}")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
        raise ValueError("unknown config field(s) " + ", ".join(
            f"config.{u}" + (f" (did you mean config.{hints[u][0]}?)" if hints[u] else "")
            for u in unknown) + f"; known fields: {', '.join(sorted(known))}")
    if values.get("smoke"):
        defaults = dataclasses.asdict(RunConfig())
        for name, shrink in SMOKE.items():
            value = values.get(name, defaults[name])
            if name in ("draw_epochs",) and not isinstance(value, (tuple, list)):
                value = (value,)
            values[name] = shrink(value)
    return RunConfig(**values)


def is_auto(config) -> bool:
    """True if a config (ConfigDict, dict or RunConfig) asks for `ratios='auto'`."""
    ratios = config.ratios if isinstance(config, RunConfig) else (
        config.get("ratios") if isinstance(config, (dict, ml_collections.ConfigDict)) else None)
    return ratios in ("auto", ["auto"], AUTO_RATIOS)


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits of SHA-256 over the fields that change training (not `UNHASHED_FIELDS`)."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _fail(name, value, allowed):
    raise ValueError(f"config.{name}={value!r} is invalid: {allowed}")


def _number(name, value, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        _fail(name, value, f"expected {'an integer' if integer else 'a number'}")
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi or value != value:  # value != value: NaN
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        _fail(name, value, f"must be in {left}{'-inf' if lo is None else lo}, "
              f"{'inf' if hi is None else hi}{right}")


def _choice(name, value, choices):
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(map(repr, choices))}")


def _validate(c: RunConfig):
    _choice("method", c.method, methods.names())
    for name, choices in (("retrain", RETRAIN_MODES),
                          ("search_precision", SEARCH_PRECISIONS),
                          ("retrain_precision", RETRAIN_PRECISIONS),
                          ("export", EXPORT_MODES), ("scope", SCOPES), ("verbose", (0, 1, 2))):
        _choice(name, getattr(c, name), choices)
    for name in ("model", "dataset"):
        if not isinstance(getattr(c, name), str) or not getattr(c, name).strip():
            _fail(name, getattr(c, name), "must be a non-empty name")
    for name in ("augment", "deterministic", "nesterov", "retrain_l1", "keep_training",
                 "tensorboard", "smoke", "strict"):
        if not isinstance(getattr(c, name), bool):
            _fail(name, getattr(c, name), "must be True or False")
    _number("epochs", c.epochs, lo=1, integer=True)
    _number("batch_size", c.batch_size, lo=1, integer=True)
    _number("train_subset", c.train_subset, lo=0, integer=True)
    _number("eval_batches", c.eval_batches, lo=0, integer=True)
    _number("seed", c.seed, lo=0, integer=True)
    _number("width", c.width, lo=0, hi=4, lo_open=True)
    _number("validation_fraction", c.validation_fraction, lo=0, hi=1, hi_open=True)
    _number("lr", c.lr, lo=0, hi=10, lo_open=True)
    _number("lr_decay", c.lr_decay, lo=0, hi=1, lo_open=True)
    _number("warmup_epochs", c.warmup_epochs, lo=0, hi=c.epochs, hi_open=True, integer=True)
    _number("momentum", c.momentum, lo=0, hi=1, hi_open=True)
    _number("weight_decay", c.weight_decay, lo=0, hi=1)
    _number("l1", c.l1, lo=0, hi=1)
    _number("threshold", c.threshold, lo=0, hi=1, lo_open=True)
    _number("window", c.window, lo=2, hi=c.epochs, integer=True)
    _number("min_channels", c.min_channels, lo=1, integer=True)
    _number("snip_batches", c.snip_batches, lo=1, integer=True)
    _number("thinet_images", c.thinet_images, lo=1, integer=True)
    _number("rewind_epoch", c.rewind_epoch, lo=0, hi=c.epochs, hi_open=True, integer=True)
    if c.round_multiple not in ("auto", "none"):
        if isinstance(c.round_multiple, str):
            _fail("round_multiple", c.round_multiple, "must be auto, none or an int >= 1")
        _number("round_multiple", c.round_multiple, lo=1, integer=True)
    if c.round_max_flops_growth != 0:
        _number("round_max_flops_growth", c.round_max_flops_growth, lo=1)
    if not c.ratios:
        _fail("ratios", c.ratios, "give at least one pruning ratio in (0, 1)")
    _check_budget(c)
    for r in ([] if c.ratios == AUTO_RATIOS else c.ratios):
        _number("ratios", r, lo=0, hi=1, lo_open=True, hi_open=True)
    if len(set(c.ratios)) != len(c.ratios):
        _fail("ratios", c.ratios, "each ratio at most once")
    for m in c.lr_milestones:
        _number("lr_milestones", m, lo=0, hi=1)
    if list(c.lr_milestones) != sorted(c.lr_milestones):
        _fail("lr_milestones", c.lr_milestones, "fractions of T in increasing order")
    for e in c.draw_epochs:
        _number("draw_epochs", e, lo=1, hi=c.epochs, integer=True)
    methods.get(c.method).check_config(c)
    _check_keras_version(c)
    _choice("strategy", c.strategy, STRATEGIES)
    _choice("lr_scaling", c.lr_scaling, LR_SCALINGS)
    if not isinstance(c.sync_bn, bool):
        _fail("sync_bn", c.sync_bn, "must be True or False")


# What a Keras 3 run cannot do, and why: {field: (refused values, reason)}.
_KERAS3_LIMITS = {
    "search_precision": (("int8", "int8_wage"), "fake-quant search is tfmot's, tf_keras only"),
    "retrain_precision": (("int8",), "QAT is tfmot's, tf_keras only"),
    "ratios": ((AUTO_RATIOS,), "eb_tf.tuning runs keras-tuner on tf_keras models only"),
    "method": (("snip", "thinet"), "its channel scoring reads tf_keras models only"),
}


def _check_keras_version(c: RunConfig):
    """`keras_version` is 2 or 3; a Keras 3 run refuses the tf_keras-only features."""
    if isinstance(c.keras_version, bool) or c.keras_version not in (2, 3):
        _fail("keras_version", c.keras_version, "must be 2 (tf_keras) or 3 (Keras 3)")
    if c.keras_version != 3:
        return
    for name, (refused, reason) in _KERAS3_LIMITS.items():
        value = getattr(c, name)
        if value in refused:
            shown = "auto" if value == AUTO_RATIOS else value
            raise ValueError(f"config.{name}={shown!r} is invalid with config.keras_version=3: "
                             f"{reason}; use config.keras_version=2 for it")


def _check_budget(c: RunConfig):
    """`max_flops`/`max_latency_ms` go with `ratios='auto'` (eb_tf.tuning), and back."""
    _number("max_flops", c.max_flops, lo=0)
    _number("max_latency_ms", c.max_latency_ms, lo=0)
    if c.ratios == AUTO_RATIOS and not (c.max_flops or c.max_latency_ms):
        _fail("ratios", "auto", "ratios='auto' needs a budget: set config.max_flops "
              "(per-sample FLOPs of the ticket) or config.max_latency_ms (TFLite batch-1)")
    if c.ratios != AUTO_RATIOS and (c.max_flops or c.max_latency_ms):
        name = "max_flops" if c.max_flops else "max_latency_ms"
        _fail(name, getattr(c, name), "a budget applies only with config.ratios='auto' "
              "(eb_tf.tuning then chooses p under it); set it to 0 or use ratios='auto'")
