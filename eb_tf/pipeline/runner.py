"""EB Train end to end: search the Early-Bird ticket, draw it, retrain it (and baselines).

`run(config, workdir)` is what `python -m binaries.eb_train` calls; the phase binaries
call `run(..., phases=("search",))` and so on on the same run folder. What each phase
does is read from the method's record (`eb_tf.pipeline.methods`: `eb`, `dense`, `ns`,
`lt`, `snip`, `thinet`, or one you register):

- search (`eb_tf.pipeline.search`): dense training, with L1 on BN gammas and
  `EarlyBird` for a pruning method, until every ratio's ticket emerges at epoch t
  (`eb`) or for T epochs (none for `snip`, which draws from the initialisation);
- draw (`eb_tf.pipeline.draw`): the masks (|gamma|, or the record's own `select`:
  SNIP, ThiNet) become physically smaller tickets (`round_masks`, `prune`), loaded
  with the weights their retrain starts from;
- retrain (`eb_tf.pipeline.retrain`): each ticket to epoch T, e.g. `inherit` (weights of
  t, `fit(initial_epoch=t, epochs=T)` on the same epoch-indexed schedule: search +
  retrain = T epochs), `reinit` (fresh init, T epochs) or `rewind` (weights and
  schedule position of epoch k);
- export (`eb_tf.pipeline.export_phase`): TFLite files of the final models.

Every phase resumes from its last completed epoch after a kill and is skipped when its
report entry says `done`. See `eb_tf.pipeline.run_dir` for the folder layout and report.
`ratios='auto'` is resolved before the pipeline runs, by `eb_tf.tuning.resolve_auto`
(the eb_train binary does it).

Example:

    from eb_tf import pipeline
    cfg = pipeline.default_config()
    cfg.dataset, cfg.model, cfg.epochs = "digits", "convnet", 20
    report = pipeline.run(cfg, "/tmp/eb_run")
    report["eb"]["0.5"]          # {"epoch": 7, "found": True, ...}
"""
import os
from typing import Iterable, Optional

from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import (distributed, health, methods, run_dir, run_lock, run_report,
                            savings)
from eb_tf.pipeline.build import build_dense_model, check_model_name, determinism, load_splits
from eb_tf.pipeline.draw import draw
from eb_tf.pipeline.export_phase import export
from eb_tf.pipeline.retrain import retrain
from eb_tf.pipeline.search import adopt, search

__all__ = ["PHASES", "run", "search", "draw", "retrain", "export", "load_splits",
           "build_dense_model"]

PHASES = ("search", "draw", "retrain", "export")
_PHASE_FUNCTIONS = {"search": search, "draw": draw, "retrain": retrain, "export": export}


def run(config, workdir: str, phases: Iterable[str] = PHASES, splits=None,
        print_summary: bool = True, adopt_search: Optional[str] = None) -> dict:
    """Runs (or resumes) the phases of one run folder and returns its report.

    Args:
      config: an ml_collections ConfigDict (see `eb_tf.pipeline.default_config`), a dict
        or a `RunConfig`; validated before anything is trained.
      workdir: the run folder; same config -> resume, another config -> ValueError.
      phases: a subset of ("search", "draw", "retrain", "export"), run in this order.
      splits: optional `eb_tf.data` Splits to use instead of loading `config.dataset`
        (your own data; the config hash does not see it).
      print_summary: print the summary table at the end.
      adopt_search: a run folder with a finished search that trained as this method's
        would (the record's `search_as`, e.g. the benchmark's dense run for `thinet`):
        copied into this run (`eb_tf.pipeline.search.adopt`) instead of trained.

    Returns:
      The report dict (also in `workdir/report.json`); its `"warnings"` list the
      results that look useless (chance-level accuracy, no ticket before T...).

    Raises:
      ValueError: bad config field, `ratios='auto'` not resolved yet, a method that only
        the benchmark runs, unknown phase, a workdir holding another config or used by
        another process (`run_lock.RunFolderLocked`), or a phase whose input is missing
        (e.g. `draw` before `search`).
      eb_tf.pipeline.health.TrainingDiverged: (a ValueError) a phase's loss became NaN.
      eb_tf.pipeline.health.RunWarnings: (a ValueError) `config.strict=True` and the
        report (written first) holds `"warnings"` (eb_tf.pipeline.health).
    """
    if eb_config.is_auto(config):
        raise ValueError("config.ratios='auto' is resolved before the pipeline runs: call "
                         "eb_tf.tuning.resolve_auto(config, workdir + '/tune') and pass the "
                         "config it returns (the eb_train binary does this)")
    cfg = eb_config.from_config_dict(config)
    if methods.get(cfg.method).run is not None:
        raise ValueError(f"config.method={cfg.method!r} is not run by the EB Train pipeline; "
                         "run it in the benchmark (eb_bench --config.methods=...)")
    phases = tuple(phases)
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"phases={phases!r}: each must be one of {PHASES}")
    check_model_name(cfg)
    # The strategy before any TF op; non-chief workers write to a temporary copy of the
    # folder; search/retrain build and train in strategy.scope(). One process per folder
    # (the lock); the data loads before the folder takes the run's identity.
    with distributed.pipeline(cfg, workdir) as dist, run_lock.hold(dist.workdir):
        with determinism(cfg):
            if splits is None and any(p != "draw" for p in phases):
                splits = load_splits(cfg)
            rd = run_dir.RunDir.open(dist.workdir, cfg)
            rd.update_report(distribute={p: dist.describe() for p in phases})
            if adopt_search and "search" in phases:
                adopt(dist.cfg, rd, adopt_search)
            for phase in PHASES:
                if phase in phases:
                    with dist.scope(phase):
                        _PHASE_FUNCTIONS[phase](dist.cfg, rd, dist.splits(splits))
        report = rd.update_report(total=run_dir.totals(rd.report()))
        if splits is not None:  # a draw alone changes no result: its warnings stay
            report = health.record(rd, cfg, splits)
            report = savings.record(rd, cfg, splits)  # vs dense training of the same T
        run_report.write(rd)  # RUN/report.md and its plots, every run (inside the lock)
    if print_summary:
        print(run_dir.summary_table(report, report_md=os.path.join(
            os.path.abspath(workdir), run_report.REPORT_FILE)))
    health.raise_if_strict(report, cfg, workdir)
    return report
