"""EB Train side by side with dense, network slimming, lottery ticket, SNIP, ThiNet and tfmot.

`run_benchmark(config, workdir)` runs, in one process, on one `eb_tf.data` Splits (same
data, same seed), every method of `config.methods` into its own run folder, then reads
their report.json files and writes `workdir/bench.json`, `bench.md` and `bench.png`:

    workdir/dense/ ns/ lt/ snip/ thinet/ eb/ eb_int8/   `eb_tf.pipeline.runner.run` folders
    workdir/tfmot/p0.5/                    `eb_tf.bench.tfmot_baseline` (needs the eb ticket)
    workdir/bench.json, bench.md, bench.png

Methods are the records of `eb_tf.pipeline.methods` and their variants: `dense`, `ns`,
`lt`, `snip`, `thinet` (`eb_tf.pipeline.baseline_methods`; thinet's search is a copy of
the `dense` run's when that runs too: its record's `search_as`), `eb` (fp32 search),
`eb_int8` (the `eb` variant with search_precision=int8) and `tfmot` (unstructured, as
many nonzero parameters as the eb ticket; its record brings its own runner). A method
you register is a benchmark token too. Every run
exports its final model to float32 TFLite (size, batch-1 latency). Per (method, p)
the table has test accuracy, wall-clock, training FLOPs, their ratios to dense and
to ns, the FLOPs-predicted cost (`eb_tf.bench.report.predicted_cost`), EB epoch,
params, FLOPs/sample, TFLite size and latency. Micro-benchmarks: `EarlyBird.
on_epoch_end` on the eb run's dense net vs its epoch time, and the train-step time of
that net vs its ticket vs the ticket rounded to x8 widths (`eb_tf.bench.step_time`).

The config is a run config (`eb_tf.pipeline.config`) plus the bench fields of `BENCH_FIELDS`
(see configs/bench_cifar10.py). Run again to resume: finished folders are skipped,
interrupted ones continue from their last epoch.

Example:

    from configs import bench_cifar10
    from eb_tf import bench
    result = bench.run_benchmark(bench_cifar10.get_config("smoke"), "/tmp/bench")
    [(r["method"], r["test_acc"], r["vs_dense"]["flops"]) for r in result["rows"]]
"""
import dataclasses
import os
import subprocess
import sys
from typing import Dict, Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.bench import report as bench_report
from eb_tf.bench import seeds as seeds_lib
from eb_tf.bench import step_time as step_bench
from eb_tf.bench import tfmot_baseline  # registers the `tfmot` method
from eb_tf.pipeline import build
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import draw
from eb_tf.pipeline import methods as methods_lib
from eb_tf.pipeline import run_dir, runner, schedules, widths
from eb_tf.pruning.pruner import prune
from eb_tf.pruning.rounding import round_masks

__all__ = ["METHODS", "BENCH_FIELDS", "STUDY_NAMES", "BenchOptions", "split_config",
           "method_config", "run_benchmark", "describe_options", "prepare_data"]



def bench_tokens() -> Tuple[str, ...]:
    """Every method and variant in benchmark order: the baselines first, then the methods
    that stop at the ticket (each variant after its method), then those with their own
    runner (which may need the others' results)."""
    order = list(methods_lib.tokens())
    record = {t: methods_lib.resolve(t)[0] for t in order}
    return tuple(sorted(order, key=lambda t: (record[t].run is not None,
                                              record[t].stops_at_ticket, order.index(t))))


METHODS = bench_tokens()  # the built-in tokens; methods registered later count too
SCHEMA_VERSION = 1
BENCH_FIELDS = {  # name: (default, help)
    "methods": (",".join(METHODS), "comma-separated methods or variants of "
                "eb_tf.pipeline.methods: " + ", ".join(METHODS)),
    "tfmot_schedule": ("polynomial", "tfmot sparsity schedule: polynomial | constant"),
    "tfmot_end_fraction": (0.5, "polynomial: final sparsity reached at this fraction of T"),
    "step_batch": (0, "micro-benchmark batch (0 = the run's batch_size)"),
    "step_steps": (5, "timed train steps per round of the micro-benchmark"),
    "step_repeats": (3, "rounds of the micro-benchmark (median reported)"),
    "step_round_multiple": (8, "width multiple of the rounded ticket in the micro-benchmark "
                            "(the run's own is config.round_multiple)"),
    "eb_calls": (20, "timed EarlyBird.on_epoch_end calls"),
    "data_prepare": ("", "script run as `python SCRIPT PATH` when config.dataset is "
                     "npz:PATH and PATH is missing (e.g. the shared cifar10_npz.py)"),
    "seeds": ("", "comma-separated seeds: the whole benchmark once per seed in "
              "WORKDIR/seed<s>/, rows = mean and spread ('' = config.seed alone)"),
    "study": ("methods", "what eb_bench runs: methods (the methods side by side) | table1 "
              "(tickets drawn at the EB epoch and later, retrained: eb_tf.bench.table1)"),
    "table1_schedules": ("paper,large_lr", "table1: the search lr schedules, presets of "
                         "eb_tf.pipeline.schedules.PRESETS, comma-separated"),
    "table1_retrain_epochs": (0, "table1: epochs every ticket is retrained for from its "
                              "drawn weights, lr schedule `paper` (0 = T)"),
}
STUDY_NAMES = ("methods", "table1")  # config.study: eb_tf.bench.studies runs each


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """The bench fields of a config (defaults and help in `BENCH_FIELDS`)."""
    methods: Tuple[str, ...] = METHODS
    tfmot_schedule: str = "polynomial"
    tfmot_end_fraction: float = 0.5
    step_batch: int = 0
    step_steps: int = 5
    step_repeats: int = 3
    step_round_multiple: int = 8
    eb_calls: int = 20
    data_prepare: str = ""
    seeds: Tuple[int, ...] = ()
    study: str = "methods"
    table1_schedules: Tuple[str, ...] = ("paper", "large_lr")
    table1_retrain_epochs: int = 0

    def __post_init__(self):
        object.__setattr__(self, "seeds", seeds_lib.parse_seeds(self.seeds))
        if self.study not in STUDY_NAMES:
            raise ValueError(f"config.study={self.study!r} is invalid: must be one of "
                             f"{', '.join(map(repr, STUDY_NAMES))}")
        names = self.table1_schedules
        names = tuple(n.strip() for n in (names.split(",") if isinstance(names, str)
                                          else names) if n.strip())
        if not names or len(set(names)) != len(names) or \
                any(n not in schedules.PRESETS for n in names):
            raise ValueError(f"config.table1_schedules={self.table1_schedules!r} is invalid: "
                             f"give distinct presets of {', '.join(schedules.PRESETS)}, "
                             "comma-separated")
        object.__setattr__(self, "table1_schedules", names)
        methods = self.methods
        if isinstance(methods, str):
            methods = tuple(m.strip() for m in methods.split(",") if m.strip())
        methods = tuple(methods)
        known = bench_tokens()
        bad = [m for m in methods if m not in known]
        if bad or not methods or len(set(methods)) != len(methods):
            raise ValueError(f"config.methods={self.methods!r} is invalid: give each of "
                             f"{', '.join(known)} at most once, comma-separated")
        for token in methods:
            record = methods_lib.resolve(token)[0]
            missing = [r for r in record.requires if r not in methods]
            if missing:
                raise ValueError(f"config.methods={self.methods!r} is invalid: {token} needs "
                                 f"{', '.join(map(repr, missing))} too ({record.summary})")
        object.__setattr__(self, "methods", tuple(m for m in known if m in methods))
        if self.tfmot_schedule not in tfmot_baseline.SCHEDULES:
            raise ValueError(f"config.tfmot_schedule={self.tfmot_schedule!r} is invalid: "
                             f"must be one of {tfmot_baseline.SCHEDULES}")
        if not 0.0 < self.tfmot_end_fraction <= 1.0:
            raise ValueError(f"config.tfmot_end_fraction={self.tfmot_end_fraction!r} is "
                             "invalid: must be in (0, 1]")
        for name, lo in (("step_batch", 0), ("step_steps", 1), ("step_repeats", 1),
                         ("step_round_multiple", 1), ("eb_calls", 1),
                         ("table1_retrain_epochs", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"config.{name}={value!r} is invalid: must be an int >= {lo}")


@dataclasses.dataclass
class RunContext:
    """What a method with its own runner sees: the reports so far and the bench options."""
    reports: Dict[str, dict]
    options: BenchOptions


def split_config(config) -> Tuple[dict, BenchOptions]:
    """(run config fields as a dict, `BenchOptions`) of a bench ConfigDict or dict."""
    values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    bench = {k: values.pop(k) for k in list(values) if k in BENCH_FIELDS}
    values.pop("method", None)  # set per method by the benchmark
    return values, BenchOptions(**bench)


def method_config(run_values: dict, method: str) -> eb_config.RunConfig:
    """The validated run config of one method or variant (tfmot: the dense run's config)."""
    record, overrides = methods_lib.resolve(method)
    values = {**run_values, "export": "float32",
              "method": record.config_method or record.name, **overrides}
    return eb_config.from_config_dict(values)


def prepare_data(cfg, options) -> None:
    """Runs `options.data_prepare` once when `cfg.dataset` is npz:PATH and PATH is missing."""
    path = cfg.dataset[len("npz:"):] if cfg.dataset.startswith("npz:") else None
    if path and options.data_prepare and not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # e.g. the cache
        subprocess.run([sys.executable, options.data_prepare, path], check=True)


def run_benchmark(config, workdir: str, splits=None) -> dict:
    """Runs (or resumes) every method and writes bench.json / bench.md / bench.png.

    Args:
      config: a bench ConfigDict or dict (a run config plus `BENCH_FIELDS`), e.g.
        `configs/bench_cifar10.py`'s `get_config("small")`.
      workdir: the benchmark folder (one run folder per method inside).
      splits: optional `eb_tf.data` Splits instead of loading `config.dataset`.

    Returns:
      The bench.json dict: `config`, `options`, `machine` (the device as the width
      cache names it, and whether it has bf16 units), `versions` (the libraries),
      `seeds` (with `config.seeds`: `per_seed` benchmarks and mean rows, see
      `eb_tf.bench.seeds`), `rows` (one per method and p, see
      `eb_tf.bench.report.method_row`), `micro`, `overhead` (each phase's seconds beyond
      its steps at the bare step time: `eb_tf.bench.report.overheads`), `notes`, `files`.

    Raises:
      ValueError: a bad run or bench field (named), or what the pipeline rejects.

    Example:
      >>> cfg = bench_cifar10.get_config("smoke"); cfg.methods = "dense,eb"
      >>> bench.run_benchmark(cfg, "/tmp/bench")["rows"][1]["vs_dense"]["flops"]
      0.80
    """
    run_values, options = split_config(config)
    if options.seeds:
        return _run_seeds(run_values, options, workdir, splits)
    base = method_config(run_values, "dense")
    if base.ratios == eb_config.AUTO_RATIOS:
        raise ValueError("config.ratios='auto' is not supported by the benchmark: give the "
                         "pruning ratios, e.g. --config.ratios=0.5")
    configs = {token: method_config(run_values, token) for token in options.methods}
    if base.keras_version != 2 and "tfmot" in configs:   # fail before any training
        raise ValueError(f"config.methods has tfmot, which prunes tf_keras models only, and "
                         f"config.keras_version={base.keras_version}: drop tfmot or use "
                         "config.keras_version=2")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if splits is None:
        prepare_data(base, options)
        splits = build.load_splits(base)
    context = RunContext(reports={}, options=options)
    runs = {}  # (token, ratio or None) -> (report, folder relative to workdir)
    for token in options.methods:
        record, cfg = methods_lib.resolve(token)[0], configs[token]
        folder = os.path.join(workdir, token)
        if cfg.verbose:
            print(f"eb_bench: {token} in {folder}", flush=True)
        if record.run is not None:
            for ratio, (report, path) in record.run(cfg, folder, splits, context).items():
                runs[(token, ratio)] = (report, path)
            continue
        shared = os.path.join(workdir, record.search_as) \
            if record.search_as in context.reports else None  # thinet: the dense run's search
        report = runner.run(cfg, folder, splits=splits, print_summary=False,
                            adopt_search=shared)
        context.reports[token] = report
        for ratio in (base.ratios if record.prunes else (None,)):
            runs[(token, ratio)] = (report, token)
    rows = [bench_report.method_row(report, token, ratio, path, base.to_dict())
            for (token, ratio), (report, path) in runs.items()]
    bench_report.add_ratios(rows)
    result = {"schema_version": SCHEMA_VERSION, "config": base.to_dict(),
              "options": {**dataclasses.asdict(options), "methods": list(options.methods),
                          "seeds": list(options.seeds),
                          "table1_schedules": list(options.table1_schedules)},
              "machine": {"device": widths.device_descriptor(),
                          "bf16_units": widths.has_bf16()},
              "versions": run_dir.versions(), "seeds": [int(base.seed)],
              "rows": rows,
              "micro": _micro(workdir, base, options, context.reports),
              "notes": _notes(base, rows)}
    result["overhead"] = bench_report.overheads(rows, result["micro"])
    result["config"].pop("method")
    return _write(result, workdir)


def _write(result: dict, workdir: str) -> dict:
    """bench.json, bench.md and bench.png of `result` in `workdir`; returns the result."""
    files = {"json": os.path.join(workdir, "bench.json"),
             "markdown": os.path.join(workdir, "bench.md"),
             "plot": os.path.join(workdir, "bench.png")}
    result["files"] = files
    io_utils.atomic_write_text(files["markdown"], bench_report.markdown(result))
    bench_report.plot(result, files["plot"])
    io_utils.atomic_write_json(files["json"], result)
    return result


def _run_seeds(run_values, options, workdir, splits) -> dict:
    """The benchmark once per seed in WORKDIR/seed<s>/, then the mean rows (`seeds`)."""
    if splits is not None:
        raise ValueError("config.seeds needs the benchmark to load each seed's data: "
                         "pass splits=None (the splits are seeded)")
    workdir = os.path.abspath(workdir)
    one = {**dataclasses.asdict(options), "methods": ",".join(options.methods), "seeds": ""}
    results = [run_benchmark({**run_values, **one, "seed": s},
                             os.path.join(workdir, f"seed{s}"))
               for s in options.seeds]
    rows = bench_report.add_ratios(seeds_lib.aggregate([r["rows"] for r in results],
                                                       options.seeds))
    first = results[0]
    result = {**{k: first[k] for k in ("schema_version", "config", "machine", "versions",
                                        "micro", "overhead")},
              "options": {**dataclasses.asdict(options), "methods": list(options.methods),
                          "seeds": list(options.seeds),
                          "table1_schedules": list(options.table1_schedules)},
              "seeds": list(options.seeds), "rows": rows,
              "per_seed": [{"seed": s, "bench": os.path.join(f"seed{s}", "bench.json")}
                           for s in options.seeds]}
    result["notes"] = list(first["notes"]) + [
        f"rows: means over seeds {list(options.seeds)} (the micro-benchmark and the overhead "
        f"table: seed {options.seeds[0]}'s); ratios from the mean seconds and FLOPs."]
    return _write(result, workdir)


def _micro(workdir, cfg, options, reports) -> dict:
    """EarlyBird overhead and train-step times on the EB run's dense net and ticket.

    The EB run is the first method run whose record stops at the ticket (`eb`).
    """
    token = next((t for t in options.methods if t in reports
                  and methods_lib.resolve(t)[0].stops_at_ticket), None)
    if token is None:
        return {}
    eb_dir = os.path.join(workdir, token)
    dense = draw.load_model(os.path.join(eb_dir, "search", "final.keras"))
    history = io_utils.read_json(os.path.join(eb_dir, "search", "history.json"))
    epoch_s = float(np.median([h["seconds"] for h in history])) if history else float("nan")
    bird = step_bench.earlybird_ms(dense, cfg.ratios, calls=options.eb_calls)
    bird.update(ratios=list(cfg.ratios), epoch_s=epoch_s,
                fraction=bird["median_ms"] / 1e3 / epoch_s if epoch_s else None)
    ratio = cfg.ratios[0]
    ticket_dir = os.path.join(eb_dir, "tickets", run_dir.ratio_key(ratio))
    masks = draw.read_mask(os.path.join(ticket_dir, "mask.npz"))
    rounded = round_masks(dense, masks, multiple=options.step_round_multiple)
    p = f"p={ratio:g}"
    models = {"dense": dense, f"pruned {p}": draw.load_model(
        os.path.join(ticket_dir, "model.keras")),
        f"pruned {p} rounded x{options.step_round_multiple}": prune(dense, rounded)}
    batch = options.step_batch or cfg.batch_size
    rows = step_bench.step_times(models, batch=batch, steps=options.step_steps,
                                 repeats=options.step_repeats, seed=cfg.seed)
    return {"method": token, "earlybird": bird, "step_time": {
        "batch": batch, "steps": options.step_steps, "repeats": options.step_repeats,
        "ratio": ratio, "round_multiple": options.step_round_multiple, "rows": rows}}


def _notes(cfg, rows) -> list:
    notes = ["Training cost = every phase that trained the row's model (search + draw + that "
             "p's retrain; dense: search; tfmot: train; thinet's search is the dense run's, "
             "trained once and counted in both rows; the draw holds snip's and thinet's "
             "scoring passes, s); the TFLite export is not counted. "
             "FLOPs = 3 x forward FLOPs (1 MAC = 1 FLOP) x samples; r = ticket / dense FLOPs "
             "per sample, t the EB epoch, k the rewind epoch."]
    for token in dict.fromkeys(r["method"] for r in rows):
        record, overrides = methods_lib.resolve(token)
        what = (f"{record.name} with " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
                if overrides else record.summary)
        notes.append(f"{token}: {what}; predicted x dense = {record.formula or 'n/a'}.")
    notes += ["Low-precision searches (search_precision int8, ...) count the same MACs; "
              "simulated int8 on float hardware costs time rather than saving it. The params "
              "column of unstructured pruning counts nonzero weights.",
              "Wall-clock seconds come from a machine that may be shared: repeat the run and "
              "compare before reading small time ratios."]
    for r in rows:
        if methods_lib.resolve(r["method"])[0].stops_at_ticket and r["eb_epoch"] is not None:
            at_paper = bench_report.predicted_cost(r["method"], cfg.epochs, r["flops_ratio"],
                                                   0.125 * cfg.epochs)
            notes.append(f"{r['method']} p={r['ratio']:g}: EB epoch t = {r['eb_epoch']} of "
                         f"T = {cfg.epochs} (t/T = {r['eb_epoch'] / cfg.epochs:.0%}; the paper "
                         f"reports 6-12.5% at T = 160); at t/T = 12.5% the same ticket "
                         f"(r = {r['flops_ratio']:.3f}) would cost {at_paper:.3f} x dense"
                         + ("" if r["found"] else "; no ticket emerged: drawn at T"))
    return notes


def describe_options() -> str:
    """One line per bench field: name, default and help."""
    return "\n".join(f"{k} = {v[0]!r}: {v[1]}" for k, v in BENCH_FIELDS.items())
