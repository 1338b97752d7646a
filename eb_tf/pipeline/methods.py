"""One record per training method: what it trains with, when it stops, what it draws, how it retrains.

The pipeline (`search`, `draw`, `retrain`), the run config's validation, the benchmark
and its report read these records; none of them compares method names. A method is a
`Method` in `REGISTRY`; the built-in ones are

| method  | search (dense)                  | draws at          | retrain from (start epoch)     | cost x dense       |
| ------- | ------------------------------- | ----------------- | ------------------------------ | ------------------ |
| `dense` | T epochs, no L1                 | -                 | -                              | 1                  |
| `ns`    | T epochs, L1                    | epoch T           | trained weights (0: T epochs)  | 1 + r              |
| `lt`    | T epochs, L1                    | epoch T           | weights of epoch k (k)         | (T + r (T - k)) / T|
| `eb`    | L1 until the ticket emerges (t) | the EB epoch t    | `config.retrain`: inherit (t), reinit (0), rewind (k) | (t + r (T - t)) / T |
| `snip`  | none (the initialisation)       | epoch 0, SNIP     | initial weights (0: T epochs)  | r + s              |
| `thinet`| T epochs, no L1 (`dense`'s)     | epoch T, ThiNet   | rescaled weights (0: T epochs) | 1 + r + s          |

(r = ticket FLOPs / dense FLOPs per sample; s = the channel-scoring passes of the draw
in units of the dense run, `Choice.flops` / (3 x dense FLOPs x T epochs of samples).)
`snip` and `thinet` are registered by `eb_tf.pipeline.baseline_methods`. A *variant* is
a method with other config values, not a new method: `eb_int8` is `eb` with
`search_precision="int8"`. The benchmark's `methods` tokens are the method names and
their variants' names.

Adding a method is one `register(Method(...))` call, e.g. in your own module:

    from eb_tf.pipeline import methods
    methods.register(methods.Method(
        name="ns_rewind", summary="network slimming, retrained from the weights of epoch k",
        retrain="rewind", formula="(T + r (T - k)) / T"))
    # now --config.method=ns_rewind works in eb_train, and eb_bench --config.methods=ns_rewind

A method that the EB Train pipeline cannot express (the tfmot baseline of the benchmark)
gives its own `run` function; such a method runs only in the benchmark.
"""
import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = ["Method", "Choice", "REGISTRY", "RETRAIN_MODES", "register", "unregister", "get",
           "names", "tokens", "resolve"]

# How a drawn ticket is retrained: the weights it starts from and the epoch its schedule
# restarts at (t: the draw epoch, k: config.rewind_epoch, T: the budget).
RETRAIN_MODES = {
    "inherit": "the weights of the draw epoch t, retrained from epoch t to T",
    "reinit": "a fresh initialisation, retrained for T epochs",
    "rewind": "the weights of epoch k (config.rewind_epoch), retrained from epoch k to T",
    "trained": "the trained weights of the draw epoch, retrained for T more epochs",
}
_CONFIG_RETRAIN = ("inherit", "reinit", "rewind")  # what config.retrain may choose


@dataclasses.dataclass(frozen=True)
class Choice:
    """A ticket's channels as a method's `select` chooses them in the draw.

    Attributes:
      masks: {BN key: bool array, True = keep}.
      model: the float model to prune (the one given, or a copy with changed weights).
      flops: the training FLOPs of the scoring passes (forward 1x, forward + backward 3x
        the per-sample forward FLOPs, times the images scored).
      samples: the images scored.
    """
    masks: Mapping[str, Any]
    model: Any
    flops: int = 0
    samples: int = 0


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: one record that every stage reads.

    Attributes:
      name: the `config.method` value (and the benchmark token).
      summary: one line for help texts and reports.
      prunes: draws and retrains a ticket (False: dense training only).
      search_l1: the search trains with L1 on the BN gammas (`config.l1`), and so does
        the retrain with `config.retrain_l1` (else neither does).
      stops_at_ticket: the search stops when every ratio's EB ticket emerged and the
        ticket is drawn at that epoch (`config.keep_training` overrides the stop);
        otherwise the search runs T epochs and draws at epoch T.
      retrain: a key of `RETRAIN_MODES`, or "config": `config.retrain` chooses one of
        inherit, reinit, rewind.
      formula: its FLOPs-predicted cost x dense, for reports.
      cost: None: `predicted_cost` derives the cost from the fields above; else a
        function of (epochs, flops_ratio, eb_epoch, rewind_epoch, retrain) that gives it.
      variants: {token: config overrides}, e.g. {"eb_int8": {"search_precision": "int8"}}.
      marker: matplotlib marker of its points in the benchmark plot.
      run: None for the EB Train pipeline; else the benchmark runs the method with
        `run(cfg, workdir, splits, context) -> {ratio: (report, folder)}`, where
        `context` holds the reports of the methods run before it and the bench options.
      config_method: the `config.method` its run config uses (None: `name`).
      phases: the report phases that train its model, in order, the first one training
        the dense network (None: ("search", "draw", "retrain"), or ("search",) for a
        method that does not prune).
      requires: methods that must run before it in the benchmark.
      select: None: the draw takes network slimming's |gamma| mask (EarlyBird's); else
        `select(cfg, model, ratio, splits) -> Choice` chooses the channels of the float
        model loaded for the draw (SNIP, ThiNet).
      draws_at_init: the search trains nothing: the ticket is drawn from the initial
        weights (draw epoch 0).
      search_as: a method whose search trains exactly as this one's (same model,
        regularisers, precision and T epochs): the benchmark copies its finished search
        instead of training it again (`eb_tf.pipeline.search.adopt`).
    """
    name: str
    summary: str
    prunes: bool = True
    search_l1: bool = True
    stops_at_ticket: bool = False
    retrain: str = "trained"
    formula: str = ""
    cost: Optional[Callable[..., float]] = None
    variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    marker: str = "o"
    run: Optional[Callable[..., Dict[Optional[float], Tuple[dict, str]]]] = None
    config_method: Optional[str] = None
    requires: Tuple[str, ...] = ()
    phases: Optional[Tuple[str, ...]] = None
    select: Optional[Callable[..., Choice]] = None
    draws_at_init: bool = False
    search_as: Optional[str] = None

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"Method name={self.name!r} must be an identifier, e.g. 'ns_rewind'")
        if self.retrain not in (*RETRAIN_MODES, "config"):
            raise ValueError(f"Method {self.name!r}: retrain={self.retrain!r} must be one of "
                             f"{', '.join(RETRAIN_MODES)} or 'config'")
        object.__setattr__(self, "variants", dict(self.variants))
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.phases is None:
            object.__setattr__(self, "phases", ("search", "draw", "retrain") if self.prunes
                               else ("search",))
        object.__setattr__(self, "phases", tuple(self.phases))

    def retrain_mode(self, cfg) -> str:
        """The `RETRAIN_MODES` key this method retrains a ticket of config `cfg` with."""
        return cfg.retrain if self.retrain == "config" else self.retrain

    def check_config(self, cfg) -> None:
        """Raises a ValueError naming the field for config values this method cannot use."""
        if self.retrain != "config" and cfg.retrain != "inherit":
            chooser = [m.name for m in REGISTRY.values() if m.retrain == "config"]
            raise ValueError(
                f"config.retrain={cfg.retrain!r} is invalid: retrain modes apply to "
                f"method={' | '.join(map(repr, chooser))} only; method={self.name!r} retrains "
                f"from {RETRAIN_MODES[self.retrain] if self.prunes else 'nothing'}")
        if not self.prunes and cfg.retrain_precision != "fp32":
            raise ValueError(f"config.retrain_precision={cfg.retrain_precision!r} is invalid: "
                             f"method={self.name!r} has no retrain; use search_precision")

    def start_epoch(self, cfg, draw_epoch: int) -> int:
        """The epoch the retrain of a ticket drawn at `draw_epoch` starts at."""
        mode = self.retrain_mode(cfg)
        return {"inherit": draw_epoch, "rewind": cfg.rewind_epoch}.get(mode, 0)

    def predicted_cost(self, epochs: int, flops_ratio: float, eb_epoch: Optional[int] = None,
                       rewind_epoch: int = 0, retrain: str = "inherit",
                       scoring: float = 0.0) -> float:
        """Training FLOPs in units of the dense run's: (search + r x retrain epochs) / T + s.

        Args:
          epochs: the budget T.
          flops_ratio: r, ticket FLOPs / dense FLOPs per sample, in (0, 1].
          eb_epoch: t, the draw epoch of a `stops_at_ticket` method, in [0, T].
          rewind_epoch: k, for the rewind retrain, in [0, T).
          retrain: `config.retrain` (read when `self.retrain == "config"`).
          scoring: s, the draw's channel-scoring passes in units of the dense run, >= 0.

        Raises:
          ValueError: a value outside its range.
        """
        if epochs < 1:
            raise ValueError(f"epochs={epochs!r} must be >= 1")
        if not 0.0 < flops_ratio <= 1.0:
            raise ValueError(f"flops_ratio={flops_ratio!r} must be in (0, 1]")
        if not scoring >= 0.0:
            raise ValueError(f"scoring={scoring!r} must be >= 0")
        if self.cost is not None:
            return float(self.cost(epochs, flops_ratio, eb_epoch, rewind_epoch, retrain)) + \
                scoring
        if not self.prunes:
            return 1.0 + scoring
        draw = 0 if self.draws_at_init else epochs
        if self.stops_at_ticket:
            if eb_epoch is None or not 0 <= eb_epoch <= epochs:
                raise ValueError(f"eb_epoch={eb_epoch!r} must be in [0, {epochs}] for "
                                 f"{self.name}")
            draw = eb_epoch
        mode = retrain if self.retrain == "config" else self.retrain
        if mode == "rewind" and not 0 <= rewind_epoch < epochs:
            raise ValueError(f"rewind_epoch={rewind_epoch!r} must be in [0, {epochs})")
        start = {"inherit": draw, "rewind": rewind_epoch}.get(mode, 0)
        return (draw + flops_ratio * (epochs - start)) / epochs + scoring


REGISTRY: Dict[str, Method] = {}


def register(method: Method, replace: bool = False) -> Method:
    """Adds `method` (and its variants) to the registry and returns it.

    Raises:
      ValueError: its name or a variant's is taken (pass replace=True to redefine it).
    """
    taken = set(tokens()) - ({method.name, *REGISTRY[method.name].variants}
                             if replace and method.name in REGISTRY else set())
    clash = sorted(taken & {method.name, *method.variants})
    if clash:
        raise ValueError(f"method {clash[0]!r} is already registered; pick another name or "
                         "pass replace=True")
    REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Removes a registered method (tests register toy methods and remove them)."""
    REGISTRY.pop(name, None)


def names() -> Tuple[str, ...]:
    """The registered methods, in registration order."""
    return tuple(REGISTRY)


def tokens() -> Tuple[str, ...]:
    """Method names and their variants' names, each variant right after its method."""
    return tuple(t for m in REGISTRY.values() for t in (m.name, *m.variants))


def get(name: str) -> Method:
    """The record of a method name; a ValueError lists the registered ones."""
    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not registered; known: {', '.join(names())} "
                         "(add one with eb_tf.pipeline.methods.register)")
    return REGISTRY[name]


def resolve(token: str) -> Tuple[Method, Dict[str, Any]]:
    """(method, config overrides) of a method name or variant name."""
    for method in REGISTRY.values():
        if token == method.name:
            return method, {}
        if token in method.variants:
            return method, dict(method.variants[token])
    raise ValueError(f"{token!r} is neither a method nor a variant; known: "
                     f"{', '.join(tokens())}")


register(Method("eb", "EB Train: dense search with L1 until the Early-Bird ticket emerges "
                "(epoch t), draw it, retrain it to T", stops_at_ticket=True, retrain="config",
                formula="(t + r (T - t)) / T", marker="*",
                variants={"eb_int8": {"search_precision": "int8"},
                          "eb_reinit": {"retrain": "reinit"},
                          "eb_lf": {"search_precision": "bf16"},
                          "eb_ll": {"search_precision": "bf16", "retrain_precision": "bf16"}}))
register(Method("dense", "standard training for T epochs (no L1, no pruning)", prunes=False,
                search_l1=False, formula="1", marker="s",
                variants={"dense_bf16": {"search_precision": "bf16"}}))
register(Method("ns", "network slimming: T epochs with L1, prune at T, retrain T epochs",
                retrain="trained", formula="1 + r", marker="^",
                variants={"ns_bf16": {"search_precision": "bf16", "retrain_precision": "bf16"}}))
register(Method("lt", "one-shot lottery ticket: T epochs with L1, prune at T, rewind to the "
                "weights of rewind_epoch k, retrain from k", retrain="rewind",
                formula="(T + r (T - k)) / T", marker="v"))
