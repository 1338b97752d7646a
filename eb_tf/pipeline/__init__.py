"""The EB Train pipeline: a run config, a resumable run folder, and four phases.

Modules in import order: `methods` (one record per training method), `config` (the
validated `RunConfig`), `schedules`, `costs` (FLOPs, seconds, energy), `run_dir` (the
run folder and its report.json), `trainer` (resumable `fit`), `build` (data, dense
model, seeds), `distributed` (tf.distribute around the phases), the phases `search`,
`draw` (with `bn_stats`: the ticket's BN statistics re-estimated), `retrain` and
`export_phase`, `health` (divergence errors, warnings on useless results), `run_lock`
(one process per run folder), `savings` (the run next to dense training of the same T),
`plots` and `run_report` (report.md with its figures), `mask_plots` (paper Fig. 3), then
`runner` (`run`: all of it), `ticket` (`load_ticket`) and `baseline_methods` (the `snip`
and `thinet` records, registered on import: their draws call `eb_tf.baselines`).

Example:

    from eb_tf import pipeline
    cfg = pipeline.default_config()
    cfg.dataset, cfg.model, cfg.epochs = "digits", "convnet", 20
    report = pipeline.run(cfg, "/tmp/eb_run")
    ticket = pipeline.load_ticket("/tmp/eb_run")
"""
from eb_tf.pipeline import baseline_methods  # noqa: F401  registers `snip` and `thinet`
from eb_tf.pipeline.config import RunConfig, default_config, from_config_dict
from eb_tf.pipeline.export_phase import export_run
from eb_tf.pipeline.health import HealthWarning, RunWarnings, TrainingDiverged
from eb_tf.pipeline.methods import Method, register
from eb_tf.pipeline.run_lock import RunFolderLocked
from eb_tf.pipeline.runner import PHASES, run
from eb_tf.pipeline.ticket import Ticket, load_ticket

__all__ = ["run", "PHASES", "RunConfig", "default_config", "from_config_dict", "Method",
           "register", "export_run", "Ticket", "load_ticket", "TrainingDiverged",
           "RunWarnings", "HealthWarning", "RunFolderLocked"]
