"""Choose the pruning ratio p (and EB threshold, L1 strength, lr) with keras-tuner.

The paper leaves the choice of p open; `tune` makes it under a budget of per-sample
ticket FLOPs (`max_flops`, `eb_tf.count_flops`) or TFLite batch-1 latency
(`max_latency_ms`, measured with `eb_tf.export_tflite` + `eb_tf.measure_latency`).
A trial is one candidate (p, threshold, l1, lr): draw its Early-Bird ticket from the
shared search of its (l1, lr) (`eb_tf.tuning.search`: p and threshold do not change
the search, so one search per (l1, lr) serves them all), retrain it for
`retrain_epochs` on the run's schedule from its ticket epoch, score it by VALIDATION
accuracy (never test). Candidates over budget stay in the results, scored
`INFEASIBLE_SCORE`. Oracles: keras-tuner's random, Bayesian or grid search.

`EBTuner` is a `keras_tuner.Tuner` whose `run_trial` builds and trains tf_keras models
itself (keras-tuner 1.4.8's stock tuners only accept Keras 3 models) and whose best
setting is rebuilt from its hyperparameters (`best_config`), never `get_best_models`.
Everything lives in the tuner directory, so a killed run resumes (completed trials keep
their ids and are not re-run); `workdir/results.{md,json}` and `chosen_config.py`
(a ready-to-run config for `eb_train`) are written at the end.

Example:

    from eb_tf.pipeline import config as eb_config
    from eb_tf import tuning
    cfg = eb_config.default_config()
    cfg.dataset, cfg.model, cfg.epochs = "digits", "convnet", 20
    cfg.ratios, cfg.max_flops = ("auto",), 3e5
    result = tuning.tune(cfg, "/tmp/eb_tune")       # or: eb_train with ratios=auto
    result.config.ratios, result.chosen["flops"]     # e.g. ((0.7,), 16820)
"""
import dataclasses
import os
from typing import Optional

from eb_tf import io_utils
from eb_tf.compat import keras, keras_tuner
from eb_tf.pipeline import build
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import health
from eb_tf.tuning import candidate as tuning_candidate
from eb_tf.tuning import report
from eb_tf.tuning import search as tuning_search
from eb_tf.tuning.config import DEFAULT_RATIOS, TuneConfig, is_auto, split_config

__all__ = ["EBTuner", "TuneResult", "tune", "resolve_auto", "INFEASIBLE_SCORE"]

INFEASIBLE_SCORE = -1.0  # below any accuracy: the worst objective value
_HPS = ("ratio", "threshold", "l1", "lr")


class EBTuner(keras_tuner.Tuner):
    """A keras-tuner `Tuner` over (p, threshold, l1, lr) for tf_keras Early-Bird tickets.

    Args:
      run_config: the base `RunConfig` (model, data, T, schedule, budget fields).
      tune_config: the `TuneConfig` (candidates, oracle, trials, retrain epochs).
      directory: the tuner directory (keras-tuner project in `tuner/`, results).
      splits: the `eb_tf.data` Splits (default: loaded from `run_config`).
      overwrite: restart the trials instead of resuming them (the cached searches and
        candidates are still reused: delete `cache_dir` to train them again).
      cache_dir: where the shared searches and the measured candidates live
        (default: `directory/searches`); tuning runs with other budgets or oracles may
        share it and then reuse what was already trained.

    Attributes:
      trials_run / search_runs / retrain_runs: trials started, searches and retrains
        trained by this instance (cached searches and retrains are not counted).

    Example:
      >>> tuner = EBTuner(run_cfg, TuneConfig(ratios=(0.3, 0.5, 0.7)), "/tmp/tune")
      >>> tuner.search()
      >>> tuner.best_config().ratios
      (0.5,)
    """

    def __init__(self, run_config, tune_config: Optional[TuneConfig] = None,
                 directory: str = "eb_tune", splits=None, overwrite: bool = False,
                 cache_dir: Optional[str] = None):
        self.run_config, self.tune_config = split_config(run_config, tune_config)
        self.space = self.tune_config.space(self.run_config)
        if self.run_config.validation_fraction <= 0:
            raise ValueError("config.validation_fraction=0: tuning scores candidates on the "
                             "validation split (never test); use a fraction in (0, 1)")
        self.root = os.path.abspath(os.fspath(directory))
        self.cache_dir = os.path.abspath(os.fspath(cache_dir)) if cache_dir else \
            os.path.join(self.root, "searches")
        self._check_directory(overwrite)
        self.splits = splits
        self.trials_run = self.search_runs = self.retrain_runs = 0
        super().__init__(oracle=self.tune_config.make_oracle(self.space),
                         directory=self.root, project_name="tuner", overwrite=overwrite)
        self.save()  # so an interrupted first trial is resumed, not forgotten

    # ----------------------------------------------------------------- directory
    def _check_directory(self, overwrite):
        path = os.path.join(self.root, "tune_config.json")
        mine = {"run_config": self.run_config.to_dict(),
                "tune_config": self.tune_config.hashed_dict()}
        if os.path.exists(path) and not overwrite:
            saved = io_utils.read_json(path)
            diffs = [f"{part}.{k}: {saved[part].get(k)!r} there vs {mine[part].get(k)!r} now"
                     for part in mine for k in sorted(set(saved[part]) | set(mine[part]))
                     if saved[part].get(k) != mine[part].get(k)
                     and k not in eb_config.UNHASHED_FIELDS]
            if diffs:
                raise ValueError(f"the tuner directory {self.root!r} holds a tuning run with "
                                 f"another config ({'; '.join(diffs)}); use a new directory "
                                 "or overwrite=True")
        io_utils.atomic_write_json(path, mine)

    def _splits(self):
        if self.splits is None:
            self.splits = build.load_splits(self.run_config)
        return self.splits

    # ----------------------------------------------------------------- trials
    def search(self, *args, **kwargs):
        """keras-tuner's search loop, under the run's seeds and op determinism."""
        with build.determinism(self.run_config):
            return super().search(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        """Scores one candidate; returns its metrics (objective `score`)."""
        hp = trial.hyperparameters
        self.trials_run += 1
        keras.backend.clear_session()  # each trial builds its models afresh
        try:
            record = self.evaluate_candidate(*(hp.get(name) for name in _HPS))
        except health.TrainingDiverged as e:  # this (l1, lr) diverges: the worst score
            print(f"eb_tune: trial {trial.trial_id} diverged, scored {INFEASIBLE_SCORE}: {e}")
            return {"score": INFEASIBLE_SCORE, "feasible": 0.0}
        except ValueError as e:  # a setting that fails for every trial: stop the search
            raise keras_tuner.errors.FatalValueError(str(e)) from e
        return {k: float(record[k]) for k in ("score", "val_accuracy", "feasible", "flops",
                                              "params", "latency_ms", "epoch")
                if record.get(k) is not None}

    def _search_run(self, l1, lr) -> tuning_search.SearchRun:
        run = tuning_search.run_search(self.run_config, l1, lr, self.space["ratio"],
                                       self.space["threshold"], self._splits(), self.cache_dir)
        self.search_runs += int(run.trained)
        return run

    def _candidate_path(self, ratio, threshold, l1, lr) -> str:
        """`CACHE/searches/<search>/candidates/p{r}_t{thr}_k{retrain_epochs}.json`."""
        search_cfg = tuning_search.search_config(self.run_config, l1, lr, self.space["ratio"],
                                                 self.space["threshold"])
        folder = tuning_search.search_folder(self.cache_dir, search_cfg, self.space["threshold"])
        return os.path.join(folder, "candidates", f"p{ratio:g}_t{threshold:g}_k"
                            f"{self.tune_config.retrain_epochs}.json")

    def judge(self, record: dict) -> dict:
        """{"feasible", "score"} of a candidate record under this tuner's budget."""
        cfg = self.run_config
        feasible = bool((not cfg.max_flops or record["flops"] <= cfg.max_flops) and (
            not cfg.max_latency_ms or record["latency_ms"] <= cfg.max_latency_ms))
        return {"feasible": feasible,
                "score": record["val_accuracy"] if feasible else INFEASIBLE_SCORE}

    def evaluate_candidate(self, ratio: float, threshold: float, l1: float, lr: float) -> dict:
        """The candidate's record: ticket, FLOPs, latency, accuracy, feasibility, score.

        What is measured is kept in the search folder (budget-independent) and reused by
        any trial or tuning run that asks for the same candidate again.
        """
        tc, path = self.tune_config, self._candidate_path(ratio, threshold, l1, lr)
        run, drawn = self._search_run(l1, lr), []

        def ticket():  # drawn once, and only if something is to be measured
            if not drawn:
                drawn.extend(tuning_candidate.draw(run, ratio, threshold, self._splits()))
            return drawn[0]
        record = io_utils.read_json(path) if os.path.exists(path) else None
        if record is None:
            ticket()
            record = {"ratio": ratio, "threshold": threshold, "l1": l1, "lr": lr, **drawn[1],
                      "search": os.path.basename(run.folder), "latency_ms": None,
                      "latency": None, "val_accuracy": None}
        latency = {"mode": tc.latency_mode, "threads": tc.latency_threads,
                   "runs": tc.latency_runs}
        if self.run_config.max_latency_ms and record["latency"] != latency:
            record.update(latency=latency, latency_ms=tuning_candidate.latency_ms(
                ticket(), os.path.splitext(path)[0] + f"_{tc.latency_mode}.tflite",
                tc.latency_mode, tc.latency_threads, tc.latency_runs, self._splits()))
        if record["val_accuracy"] is None and (self.judge(record)["feasible"]
                                               or tc.evaluate_infeasible):
            record.update(tuning_candidate.retrain(ticket(), run.cfg, record["epoch"],
                                                   tc.retrain_epochs, self._splits()))
            self.retrain_runs += 1
        io_utils.atomic_write_json(path, record)
        return {**record, **self.judge(record)}

    # ----------------------------------------------------------------- results
    def rows(self) -> list:
        """One dict per trial (all statuses), in trial-id order, with its candidate record."""
        out = []
        for trial_id in sorted(self.oracle.trials):
            trial = self.oracle.trials[trial_id]
            values = {k: trial.hyperparameters.get(k) for k in _HPS}
            path = self._candidate_path(*(values[k] for k in _HPS))
            record = io_utils.read_json(path) if os.path.exists(path) else {}
            if "flops" in record:
                record.update(self.judge(record))
            out.append({**values, **record, "trial": trial_id, "status": trial.status})
        return out

    def best_row(self) -> Optional[dict]:
        """The completed trial with the best score, if it is feasible (else None)."""
        best = [t for t in self.oracle.get_best_trials(1) if t.status == "COMPLETED"]
        if not best:
            return None
        row = next(r for r in self.rows() if r["trial"] == best[0].trial_id)
        return row if row.get("feasible") else None

    def best_config(self) -> eb_config.RunConfig:
        """The best feasible setting rebuilt from its hyperparameters, as a `RunConfig`.

        Raises:
          ValueError: no completed trial meets the budget, or no trial completed (with
            the first trial's error).
        """
        row = self.best_row()
        failed = [t for t in self.oracle.trials.values() if t.status != "COMPLETED"]
        if row is None and len(failed) == len(self.oracle.trials):
            first = (failed[0].message or "none recorded") if failed else "no trial ran"
            raise ValueError(f"no tuning trial completed ({len(failed)} did not); the first "
                             f"error:\n{first}")
        if row is None:
            smallest = min((r["flops"] for r in self.rows() if r.get("flops")), default=None)
            raise ValueError(f"no candidate meets the budget (max_flops="
                             f"{self.run_config.max_flops:g}, max_latency_ms="
                             f"{self.run_config.max_latency_ms:g}); the smallest ticket has "
                             f"{smallest} FLOPs: raise the budget or add larger ratios")
        hp = self.oracle.get_trial(row["trial"]).hyperparameters
        return dataclasses.replace(self.run_config, ratios=(hp.get("ratio"),),
                                   threshold=hp.get("threshold"), l1=hp.get("l1"),
                                   lr=hp.get("lr"), max_flops=0.0, max_latency_ms=0.0)

    def summary(self) -> dict:
        """Budget, rows, chosen row and the cost of every search and retrain they rest on."""
        rows, searches = self.rows(), {}
        for row in rows:
            if row.get("search"):
                searches[row["search"]] = io_utils.read_json(os.path.join(
                    self.cache_dir, row["search"], tuning_search.SEARCH_FILE))["cost"]
        return {"oracle": self.tune_config.oracle, "budget": {
            "max_flops": self.run_config.max_flops,
            "max_latency_ms": self.run_config.max_latency_ms},
            "infeasible_score": INFEASIBLE_SCORE, "rows": rows, "chosen": self.best_row(),
            "cost": report.cost_totals(searches.values(), rows),
            "tune_config": self.tune_config.to_dict()}


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """What `tune` returns: the chosen `config` (RunConfig), its row, the summary, files."""
    config: eb_config.RunConfig
    chosen: dict
    summary: dict
    files: dict


def tune(config, workdir: str, tune_config: Optional[TuneConfig] = None, splits=None,
         overwrite: bool = False, cache_dir: Optional[str] = None) -> TuneResult:
    """Runs (or resumes) a tuning run in `workdir` and writes its results and config.

    Args:
      config: a run config (ConfigDict / dict / RunConfig) with `ratios='auto'` and a
        budget; a ConfigDict may carry a `tune` section (`TuneConfig` fields).
      workdir: the tuner directory.
      tune_config: overrides the `tune` section.
      splits: optional `eb_tf.data` Splits (default: loaded from the config).
      overwrite: start afresh.
      cache_dir: shared searches and measured candidates (default `workdir/searches`):
        point a run with another budget at a former run's `searches` to reuse them.

    Returns:
      A `TuneResult`; `workdir/results.md`, `results.json`, `chosen_config.py` written.

    Raises:
      ValueError: a bad config field, a directory holding another tuning run, or no
        candidate within the budget.
    """
    tuner = EBTuner(config, tune_config, workdir, splits=splits, overwrite=overwrite,
                    cache_dir=cache_dir)
    cfg = tuner.run_config
    tuner.search(verbose=1 if cfg.verbose else 0)
    summary = tuner.summary()
    files = report.write_results(tuner.root, summary)
    chosen_cfg, chosen = tuner.best_config(), summary["chosen"]
    note = (f"trial {chosen['trial']} of {len(summary['rows'])} ({tuner.tune_config.oracle} "
            f"oracle) under max_flops={cfg.max_flops:g}, max_latency_ms={cfg.max_latency_ms:g}: "
            f"{chosen['flops']:,} FLOPs, validation accuracy {chosen['val_accuracy']:.4f} "
            f"after {tuner.tune_config.retrain_epochs} retrain epochs. Results: "
            f"{files['markdown']}")
    files["config"] = report.write_config(os.path.join(tuner.root, "chosen_config.py"),
                                                 chosen_cfg, note)
    return TuneResult(chosen_cfg, chosen, summary, files)


def resolve_auto(config, workdir: str, splits=None) -> eb_config.RunConfig:
    """`eb_train` with `ratios='auto'`: tunes in `workdir` and returns the chosen config."""
    return tune(config, workdir, splits=splits).config
