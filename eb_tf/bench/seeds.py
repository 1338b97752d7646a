"""A benchmark over several seeds: each seed's rows, and their mean and spread per method.

`run_benchmark` with `config.seeds = "0,1,2"` runs the whole benchmark once per seed in
`WORKDIR/seed<s>/` (each a complete benchmark folder: resumable, its own bench.json)
and writes the top-level bench.json whose `rows` are the per-(method, p) means over the
seeds, each with `seeds`, `spread` (the sample standard deviation, n - 1; 0 for one
seed) and `per_seed` (the seed's value of every aggregated field). The ratio columns
are recomputed from the mean seconds and FLOPs (`report.add_ratios`), so a mean row
reads like a single-seed row.

Example:

    cfg = bench_cifar10.get_config("small"); cfg.seeds = "0,1,2"
    result = bench.run_benchmark(cfg, "/tmp/bench3")
    result["rows"][0]["test_acc"], result["rows"][0]["spread"]["test_acc"]
"""
from typing import List, Sequence

import numpy as np

__all__ = ["AGGREGATED", "parse_seeds", "aggregate", "markdown_lines"]

# Row fields averaged over the seeds (the others are taken from the first seed's row).
AGGREGATED = ("test_acc", "val_acc", "seconds", "flops", "eb_epoch", "t_over_T",
              "params", "model_flops", "flops_ratio", "predicted_cost", "scoring")


def parse_seeds(value) -> tuple:
    """`config.seeds` ("" / "0,1,2" / a sequence of ints) as a tuple of distinct ints."""
    if value in ("", None, ()):
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        seeds = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        seeds = None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"config.seeds={value!r} is invalid: give distinct ints >= 0, "
                         "comma-separated (e.g. 0,1,2), or '' for config.seed alone")
    return seeds


def _mean(values):
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if len(present) == len(values) and present else None


def _spread(values):
    present = [v for v in values if v is not None]
    if len(present) != len(values) or not present:
        return None
    return float(np.std(present, ddof=1)) if len(present) > 1 else 0.0


def aggregate(per_seed: Sequence[List[dict]], seeds: Sequence[int]) -> List[dict]:
    """Mean rows over seeds: one per (method, p) of the first seed's rows.

    Args:
      per_seed: each seed's benchmark rows (`report.method_row`), in the order of `seeds`.
      seeds: the seeds.

    Raises:
      ValueError: the seeds' benchmarks do not have the same (method, p) rows.
    """
    keys = [[(r["method"], r["ratio"]) for r in rows] for rows in per_seed]
    if any(k != keys[0] for k in keys):
        raise ValueError(f"the seeds {list(seeds)} ran different (method, p) rows: {keys}")
    out = []
    for i, first in enumerate(per_seed[0]):
        rows = [seed_rows[i] for seed_rows in per_seed]
        mean = dict(first, run_dir=[r["run_dir"] for r in rows], seeds=list(seeds))
        mean["spread"], mean["per_seed"] = {}, {}
        for name in AGGREGATED:
            values = [r.get(name) for r in rows]
            mean[name] = _mean(values)
            mean["spread"][name] = _spread(values)
            mean["per_seed"][name] = values
        mean["found"] = None if first["found"] is None else all(r["found"] for r in rows)
        out.append(mean)
    return out


def markdown_lines(rows: List[dict]) -> List[str]:
    """bench.md's per-seed table: mean +- spread and every seed's value."""
    def cell(r, name, spec):
        mean, spread = r.get(name), r["spread"].get(name)
        if mean is None:
            return "-"
        per = ", ".join(spec.format(v) for v in r["per_seed"][name])
        return f"{spec.format(mean)} +- {spec.format(spread)} ({per})"

    lines = ["", f"## Over seeds {rows[0]['seeds']}", "",
             "| method | p | test acc | EB epoch | wall s |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:g}"
        lines.append(f"| {r['method']} | {ratio} | {cell(r, 'test_acc', '{:.4f}')} | "
                     f"{cell(r, 'eb_epoch', '{:.1f}')} | {cell(r, 'seconds', '{:.1f}')} |")
    return lines
