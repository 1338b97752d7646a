r"""EB Train side by side with dense, ns, lt, snip, thinet, int8 search and tfmot: one table.

    python -m binaries.eb_bench --config=configs/bench_cifar10.py:small --workdir=/tmp/bench_small
    python -m binaries.eb_bench --config=configs/bench_cifar10.py:smoke --workdir=/tmp/bench \
        --config.methods=dense,eb,tfmot
    python -m binaries.eb_bench --config=configs/bench_cifar10.py:table1 --workdir=/tmp/table1

`config.study` chooses what runs (eb_tf.bench.studies): `methods` writes WORKDIR/bench.json,
bench.md (printed at the end) and bench.png (accuracy vs training FLOPs), and one run
folder per method; `table1` (the table1 profiles) writes table1.json, table1.md (printed)
and its plots, one folder per lr schedule (eb_tf.bench.table1). Run again to resume:
finished runs are read back, an interrupted one continues from its last epoch. Every field of the
config can be overridden with --config.field=value (run fields: eb_tf/pipeline/config.py;
bench fields: eb_tf/bench/benchmark.py BENCH_FIELDS).
"""
from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Benchmark folder (created, or resumed).",
    config_help="Bench config file (configs/bench_cifar10.py:smoke|small|paper|table1|full); "
    "override fields with --config.field=value.",
    fields_help=cli.RUN_FIELDS + ' and python -c "from eb_tf import bench; '
    'print(bench.describe_options())"', describe=lambda: describe())


def describe() -> str:
    """--describe_config: the run config's fields, then the benchmark's."""
    from eb_tf import bench  # late: --help stays fast
    return f"{cli.describe_run_config()}\n# benchmark fields\n{bench.describe_options()}"


@cli.main
def main():
    from eb_tf import bench  # after flag parsing: --help stays fast
    result = bench.run_study(_CONFIG.value, _WORKDIR.value)
    with open(result["files"]["markdown"]) as f:
        print(f.read())


def run():
    """The console script `eb-bench`."""
    cli.run(main)


if __name__ == "__main__":
    run()
