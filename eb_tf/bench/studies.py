"""The studies `eb_bench` runs, chosen by `config.study`: one record per study name.

| study | runner | writes |
| --- | --- | --- |
| `methods` | `eb_tf.bench.benchmark.run_benchmark` | bench.json, bench.md, bench.png |
| `table1` | `eb_tf.bench.table1.run_table1` | table1.json, table1.md, table1.png, fig3_*.png |

Example:

    from configs import bench_cifar10
    from eb_tf.bench import studies
    result = studies.run_study(bench_cifar10.get_config("table1_smoke"), "/tmp/table1")
    print(open(result["files"]["markdown"]).read())
"""
from eb_tf.bench import benchmark, table1

__all__ = ["STUDIES", "run_study"]

STUDIES = {"methods": benchmark.run_benchmark, "table1": table1.run_table1}


def run_study(config, workdir: str, splits=None) -> dict:
    """Runs (or resumes) the study `config.study` names in `workdir`; returns its result.

    Raises:
      ValueError: an unknown `config.study` (named, with the studies) or a bad field of
        the study's config.
    """
    options = benchmark.split_config(config)[1]   # validates config.study
    return STUDIES[options.study](config, workdir, splits=splits)
