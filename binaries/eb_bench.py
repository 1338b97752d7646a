r"""EB Train side by side with dense, ns, lt, int8 search and tfmot: one command, one table.

    python -m binaries.eb_bench --config=configs/bench_cifar10.py:small --workdir=/tmp/bench_small
    python -m binaries.eb_bench --config=configs/bench_cifar10.py:smoke --workdir=/tmp/bench \
        --config.methods=dense,eb,tfmot

Writes WORKDIR/bench.json, bench.md (printed at the end) and bench.png (accuracy vs
training FLOPs), and one run folder per method. Run again to resume: finished methods
are read back, an interrupted one continues from its last epoch. Every field of the
config can be overridden with --config.field=value (run fields: eb_tf/pipeline/config.py;
bench fields: eb_tf/bench/benchmark.py BENCH_FIELDS).
"""
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Bench config file (configs/bench_cifar10.py:smoke|small|full); "
    "override fields with --config.field=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Benchmark folder (created, or resumed).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eb_tf import bench  # after flag parsing: --help stays fast
    try:
        result = bench.run_benchmark(_CONFIG.value, _WORKDIR.value)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    with open(result["files"]["markdown"]) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
