r"""Choose the pruning ratio p (and EB threshold, L1, lr) under a FLOPs or latency budget.

    python -m binaries.eb_tune --config=configs/tune_quickstart.py --workdir=/tmp/eb_tune
    python -m binaries.eb_tune --config=configs/tune_quickstart.py --workdir=/tmp/eb_tune \
        --config.max_flops=0 --config.max_latency_ms=0.05 --config.tune.oracle=bayesian
    python -m binaries.eb_tune --config=configs/tune_quickstart.py --workdir=/tmp/eb_tune2 \
        --config.max_flops=2e5 --cache_dir=/tmp/eb_tune/searches   # reuse the training

The config is a run config with `ratios=('auto',)`, a budget (`max_flops` per-sample
FLOPs, `max_latency_ms` TFLite batch-1) and an optional `tune` section (candidates,
oracle, trials; see eb_tf/tuning/config.py). --workdir is the tuner directory: run again
to resume (completed trials are kept). Writes WORKDIR/results.md, results.json and
chosen_config.py, a config file for `python -m binaries.eb_train`.
"""
from absl import flags

from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Tuner directory (created, or resumed).",
    config_help="Tuning config file (configs/tune_*.py[:arg]); override fields with "
    "--config.field=value and --config.tune.field=value.",
    fields_help=cli.RUN_FIELDS + "; tune.*: TuneConfig in eb_tf/tuning/config.py",
    describe=lambda: describe())


def describe() -> str:
    """--describe_config: the run config's fields, then the `tune` section's."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    from eb_tf import tuning  # late: --help stays fast
    tune = "\n".join(f"tune.{f.name} = {f.default!r}: {f.metadata['help']}"
                     for f in dataclasses.fields(tuning.TuneConfig))
    return f"{cli.describe_run_config()}\n# tuning fields\n{tune}"
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Start afresh instead of resuming.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Shared searches and measured tickets (default WORKDIR/searches); "
    "give another budget's run the first run's WORKDIR/searches to reuse its training.")
cli.register_path_validator("cache_dir", cli.check_folder)


@cli.main
def main():
    from eb_tf import tuning  # after flag parsing: --help stays fast
    result = tuning.tune(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value,
                         cache_dir=_CACHE_DIR.value)
    with open(result.files["markdown"]) as f:
        print(f.read())
    print(f"chosen config: {result.files['config']}")


def run():
    """The console script `eb-tune`."""
    cli.run(main)


if __name__ == "__main__":
    run()
