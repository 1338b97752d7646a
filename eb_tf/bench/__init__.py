"""EB Train side by side with its baselines: one benchmark, one table, one plot.

Modules in import order: `step_time` (train-step and EarlyBird micro-benchmarks),
`report` (rows, ratios, predicted cost, markdown, plot), `tfmot_baseline` (tfmot's
unstructured magnitude pruning, registered as the method `tfmot`), `benchmark`
(`run_benchmark`), `table1` (`run_table1`: tickets drawn at the EB epoch and later,
retrained, paper Table 1) and `studies` (`run_study`: the one `config.study` names).
matplotlib and tensorflow_model_optimization load only when a
benchmark draws its plot or trains the tfmot baseline.

Example:

    from configs import bench_cifar10
    from eb_tf import bench
    result = bench.run_benchmark(bench_cifar10.get_config("smoke"), "/tmp/bench")
    table = bench.run_study(bench_cifar10.get_config("table1_smoke"), "/tmp/table1")
"""
from eb_tf.bench.benchmark import (BENCH_FIELDS, METHODS, SCHEMA_VERSION, BenchOptions,
                                   describe_options, method_config, run_benchmark, split_config)
from eb_tf.bench.studies import STUDIES, run_study
from eb_tf.bench.table1 import run_table1

__all__ = ["METHODS", "BENCH_FIELDS", "BenchOptions", "split_config", "method_config",
           "run_benchmark", "describe_options", "SCHEMA_VERSION", "STUDIES", "run_study",
           "run_table1"]
