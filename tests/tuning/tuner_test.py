"""Tests of eb_tf.tuning: budgets, the best feasible choice, resume, shared searches.

One tiny tuning run (digits, width-0.25 convnet, T = 2, ratios 0.3/0.7 x lr 0.05/0.1)
is interrupted after its first retrain and resumed; the tests read that run. The rest
are unit tests without training.
"""
import importlib.util
import os
import types

import hypothesis
import hypothesis.strategies as st
import pytest

import eb_tf
from eb_tf import tuning
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import runner, trainer
from eb_tf.tuning import candidate as tuning_candidate
from eb_tf.tuning import config as tuning_config
from eb_tf.tuning import report as tuning_report
from eb_tf.tuning import search as tuning_search
from tests.pipeline_testlib import run_binary

RUN = dict(dataset="digits", model="convnet", width=0.25, epochs=2, window=2, batch_size=32,
           train_subset=256, lr=0.1, verbose=0, tensorboard=False, ratios=("auto",),
           round_multiple="none")   # exact widths: p = 0.7 tickets fit the budget by FLOPs
TUNE = dict(ratios=(0.3, 0.7), lrs=(0.05, 0.1), retrain_epochs=1, evaluate_infeasible=False)


def _config(max_flops, **tune):
    cfg = eb_config.default_config()
    cfg.update(RUN)
    cfg.max_flops = float(max_flops)
    cfg.tune = tuning_config.default_tune_config()
    cfg.tune.update({**TUNE, **tune})
    return cfg


def _budget():
    """A quarter of the dense FLOPs: p = 0.7 tickets fit, p = 0.3 ones do not."""
    dense = eb_tf.models.build("convnet", 10, (16, 16, 1), width=RUN["width"])
    return eb_tf.count_flops(dense).total // 4


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so keras-tuner does not record it."""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuning")
    directory = str(root / "run" / "tune")
    splits = eb_tf.data.load("digits", batch_size=32, seed=0, train_subset=256)
    cfg = _config(_budget())
    first = tuning.EBTuner(cfg, directory=directory, splits=splits)
    retrain = tuning_candidate.retrain

    def retrain_once_then_die(*args, **kwargs):
        if first.retrain_runs == 1:
            raise _Killed()
        return retrain(*args, **kwargs)
    tuning_candidate.retrain = retrain_once_then_die
    try:
        with pytest.raises(_Killed):
            first.search(verbose=0)
    finally:
        tuning_candidate.retrain = retrain
    before = {tid: (t.status, t.score, dict(t.hyperparameters.values))
              for tid, t in first.oracle.trials.items()}
    second = tuning.EBTuner(cfg, directory=directory, splits=splits)
    second.search(verbose=0)
    return types.SimpleNamespace(cfg=cfg, directory=directory, splits=splits, first=first,
                                 before=before, second=second, root=root)


def test_resuming_an_interrupted_run_keeps_completed_trials_without_rerunning_them(tuned):
    before, after = tuned.before, tuned.second.oracle.trials
    assert [s for s, _, _ in before.values()] == ["COMPLETED"] * 3 + ["RUNNING"]
    assert sorted(after) == ["0", "1", "2", "3"]
    for tid in ("0", "1", "2"):
        assert (after[tid].status, after[tid].score,
                after[tid].hyperparameters.values) == before[tid]
    assert after["3"].status == "COMPLETED"
    assert after["3"].hyperparameters.values == before["3"][2]  # same id, same candidate
    # Session 1 ran trials 0-3 (killed in 3), trained both searches and trial 2's
    # retrain; session 2 ran trial 3 alone and trained only its retrain.
    assert (tuned.first.trials_run, tuned.first.search_runs, tuned.first.retrain_runs) \
        == (4, 2, 1)
    assert (tuned.second.trials_run, tuned.second.search_runs, tuned.second.retrain_runs) \
        == (1, 0, 1)


def test_one_search_per_l1_lr_pair_serves_every_ratio(tuned):
    rows = tuned.second.rows()
    pairs = {(r["l1"], r["lr"]) for r in rows}
    assert len(rows) == 4 and len(pairs) == 2
    assert tuned.first.search_runs + tuned.second.search_runs == len(pairs)
    assert len({r["search"] for r in rows}) == len(pairs)
    folders = os.listdir(os.path.join(tuned.directory, "searches"))
    assert sorted(folders) == sorted({r["search"] for r in rows})
    for folder in folders:  # each search tracked both ratios' masks
        assert sorted(os.listdir(os.path.join(tuned.directory, "searches", folder, "masks"))) \
            == ["p0.3.npz", "p0.7.npz"]


def test_budget_makes_candidates_infeasible_and_the_best_feasible_one_is_chosen(tuned):
    budget = tuned.second.run_config.max_flops
    rows = tuned.second.rows()
    infeasible = [r for r in rows if not r["feasible"]]
    feasible = [r for r in rows if r["feasible"]]
    assert {r["ratio"] for r in infeasible} == {0.3} and {r["ratio"] for r in feasible} == {0.7}
    for r in infeasible:  # recorded, not dropped: measured, scored worst, not retrained
        assert r["flops"] > budget and r["params"] > 0 and 1 <= r["epoch"] <= 2
        assert r["score"] == tuning.INFEASIBLE_SCORE and r["val_accuracy"] is None
        assert tuned.second.oracle.trials[r["trial"]].score == tuning.INFEASIBLE_SCORE
    for r in feasible:
        assert r["flops"] <= budget and 0.0 <= r["val_accuracy"] <= 1.0
        assert r["score"] == r["val_accuracy"]
    best = max(feasible, key=lambda r: r["val_accuracy"])
    chosen = tuned.second.best_row()
    assert chosen["val_accuracy"] == best["val_accuracy"] and chosen["flops"] <= budget
    cfg = tuned.second.best_config()
    assert (cfg.ratios, cfg.lr, cfg.l1, cfg.threshold) == (
        (chosen["ratio"],), chosen["lr"], chosen["l1"], chosen["threshold"])
    assert (cfg.max_flops, cfg.max_latency_ms) == (0.0, 0.0)
    assert eb_tf.count_flops(tuning_candidate.draw(
        tuning_search.run_search(tuned.second.run_config, cfg.l1, cfg.lr, (0.3, 0.7), (0.1,),
                                 tuned.splits, tuned.second.cache_dir),
        chosen["ratio"], chosen["threshold"], tuned.splits)[0]).total == chosen["flops"]


def _forbid_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a cached candidate was trained again")
    monkeypatch.setattr(tuning_candidate, "retrain", fail)
    monkeypatch.setattr(trainer, "fit_resumable", fail)


def test_tune_writes_results_and_a_config_that_eb_train_accepts(tuned, monkeypatch):
    _forbid_training(monkeypatch)  # every trial is done: tune() only reports
    result = tuning.tune(tuned.cfg, tuned.directory, splits=tuned.splits)
    assert result.config == tuned.second.best_config()
    with open(result.files["markdown"]) as f:
        table = f.read()
    assert table.count("| COMPLETED |") == 4 and f"| {result.chosen['trial']} * |" in table
    summary = eb_tf.io_utils.read_json(result.files["json"])
    assert summary["cost"]["search_runs"] == 2 and summary["cost"]["retrain_epochs"] == 2
    assert summary["chosen"]["trial"] == result.chosen["trial"]
    spec = importlib.util.spec_from_file_location("chosen", result.files["config"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert eb_config.from_config_dict(module.get_config()) == result.config


def test_other_budget_reuses_the_shared_cache_and_none_feasible_is_an_error(tuned, monkeypatch):
    _forbid_training(monkeypatch)
    tuner = tuning.EBTuner(_config(1000), directory=str(tuned.root / "tiny"),
                           splits=tuned.splits, cache_dir=tuned.second.cache_dir)
    tuner.search(verbose=0)
    assert (tuner.search_runs, tuner.retrain_runs) == (0, 0)
    assert [r["feasible"] for r in tuner.rows()] == [False] * 4
    with pytest.raises(ValueError, match=r"no candidate meets the budget \(max_flops=1000"):
        tuner.best_config()


def test_reopening_a_tuner_directory_with_another_config_is_refused(tuned):
    with pytest.raises(ValueError, match=r"another config \(run_config.max_flops: "):
        tuning.EBTuner(_config(5), directory=tuned.directory, splits=tuned.splits)


@pytest.mark.slow
def test_eb_train_with_ratios_auto_tunes_then_trains_the_chosen_ticket(tuned):
    workdir = os.path.dirname(tuned.directory)  # the fixture tuned in workdir/tune
    cfg = tuning.resolve_auto(tuned.cfg, tuned.directory, splits=tuned.splits)  # as eb_train
    report = runner.run(cfg, workdir, splits=tuned.splits, print_summary=False)
    chosen = tuned.second.best_config()
    saved = eb_tf.io_utils.read_json(os.path.join(workdir, "config.json"))["config"]
    assert saved["ratios"] == [chosen.ratios[0]] and saved["lr"] == chosen.lr
    assert list(report["final"]) == [f"{chosen.ratios[0]:g}"]
    # Same deterministic search, same ticket: the FLOPs the tuner measured are the run's.
    assert report["ticket"][f"{chosen.ratios[0]:g}"]["flops"] == tuned.second.best_row()["flops"]


@pytest.mark.slow
def test_latency_budget_measures_each_ticket_once_in_tflite(tuned):
    cfg = _config(0)
    cfg.max_flops, cfg.max_latency_ms = 0.0, 1000.0
    tuner = tuning.EBTuner(cfg, directory=str(tuned.root / "latency"), splits=tuned.splits,
                           cache_dir=tuned.second.cache_dir)
    tuner.search(verbose=0)
    rows = tuner.rows()
    assert tuner.search_runs == 0 and tuner.retrain_runs == 2  # p = 0.3 is feasible now
    for r in rows:
        assert 0.0 < r["latency_ms"] < 1000.0 and r["feasible"]
        assert r["latency"] == {"mode": "float32", "threads": 1, "runs": 50}
        assert os.path.exists(os.path.join(tuner.cache_dir, r["search"], "candidates",
                                           f"p{r['ratio']:g}_t0.1_k1_float32.tflite"))
    cfg.max_latency_ms = 1e-6
    strict = tuning.EBTuner(cfg, directory=str(tuned.root / "strict"), splits=tuned.splits,
                            cache_dir=tuned.second.cache_dir)
    strict.search(verbose=0)
    assert [r["latency_ms"] for r in strict.rows()] == [r["latency_ms"] for r in rows]
    with pytest.raises(ValueError, match="no candidate meets the budget"):
        strict.best_config()


@pytest.mark.slow
def test_eb_tune_binary_prints_the_table_and_rejects_a_bad_tune_field(tmp_path):
    workdir = str(tmp_path / "tune")
    proc = run_binary("eb_tune", "--config=configs/tune_quickstart.py:smoke",
                      f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| trial | status | p | threshold |" in proc.stdout
    assert f"chosen config: {workdir}/chosen_config.py" in proc.stdout
    searches = os.path.join(workdir, "searches")
    before = sorted(os.listdir(searches))
    other = run_binary("eb_tune", "--config=configs/tune_quickstart.py:smoke",
                       f"--workdir={tmp_path / 'other'}", "--config.max_flops=1e9",
                       f"--cache_dir={searches}")
    assert other.returncode == 0, other.stderr[-3000:]
    assert sorted(os.listdir(searches)) == before          # reused, nothing retrained
    assert not os.path.exists(tmp_path / "other" / "searches")
    bad = run_binary("eb_tune", "--config=configs/tune_quickstart.py:smoke",
                     f"--workdir={tmp_path / 'bad'}", "--config.tune.oracle=hyperband")
    assert bad.returncode == 1
    assert "config.tune.oracle='hyperband' is invalid: must be one of grid" in bad.stderr


# ---------------------------------------------------------------- no training below
@pytest.mark.parametrize("kind", ["grid", "random", "bayesian"])
def test_oracles_resume_from_the_directory_and_keep_trial_ids(tmp_path, kind):
    space = {"ratio": (0.3, 0.5, 0.7), "threshold": (0.1,), "l1": (1e-4,), "lr": (0.05, 0.1)}

    def oracle():
        o = tuning.TuneConfig(oracle=kind, num_initial_points=2).make_oracle(space)
        o._set_project_dir(str(tmp_path), "p")  # what BaseTuner.__init__ does
        return o

    def run(o, n):
        seen = []
        for _ in range(n):
            trial = o.create_trial("tuner0")
            if trial.status == "STOPPED":
                break
            values = (trial.hyperparameters.get("ratio"), trial.hyperparameters.get("lr"))
            o.update_trial(trial.trial_id, {"score": values[0] + values[1]})
            trial.status = "COMPLETED"
            o.end_trial(trial)
            o.save()  # as BaseTuner.on_trial_end does after end_trial
            seen.append((trial.trial_id, values))
        return seen
    first = run(oracle(), 2)
    resumed = oracle()
    resumed.reload()
    assert {t: resumed.trials[t].hyperparameters.values["ratio"] for t, _ in first} == {
        t: v[0] for t, v in first}
    rest = run(resumed, 10)
    ids, values = [t for t, _ in first + rest], [v for _, v in first + rest]
    combos = [(r, lr) for r in (0.3, 0.5, 0.7) for lr in (0.05, 0.1)]
    assert ids == [str(i) for i in range(len(ids))] and set(values) <= set(combos)
    if kind == "grid":  # every combination exactly once (max_trials = 6)
        assert sorted(values) == combos
    elif kind == "random":  # never twice; may stop early (keras-tuner: 20 collisions)
        assert len(set(values)) == len(values) >= 4
    else:  # the GP may propose a candidate again (then served from the cache)
        assert len(ids) == 6


def test_random_and_bayesian_oracles_get_the_space_and_trial_count():
    space = {"ratio": (0.3, 0.5), "threshold": (0.05, 0.1), "l1": (1e-4,), "lr": (0.1,)}
    rnd = tuning.TuneConfig(oracle="random").make_oracle(space)
    bo = tuning.TuneConfig(oracle="bayesian", max_trials=7, num_initial_points=2) \
        .make_oracle(space)
    assert type(rnd).__name__ == "RandomSearchOracle" and rnd.max_trials == 4
    assert type(bo).__name__ == "BayesianOptimizationOracle" and bo.max_trials == 7
    assert bo.num_initial_points == 2 and rnd.objective.direction == "max"
    assert {hp.name: type(hp).__name__ for hp in rnd.hyperparameters.space} == {
        "ratio": "Choice", "threshold": "Choice", "l1": "Fixed", "lr": "Fixed"}


@hypothesis.given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=12),
                  st.floats(0.01, 1), st.floats(0.01, 1))
def test_first_crossing_is_the_first_epoch_within_the_threshold(distances, a, b):
    low, high = sorted((a, b))
    epochs = list(range(1, len(distances) + 1))
    t = tuning_search.first_crossing(epochs, distances, low)
    hits = [e for e, d in zip(epochs, distances) if d is not None and d <= low]
    assert t == (hits[0] if hits else None)
    t_high = tuning_search.first_crossing(epochs, distances, high)
    assert t is None or (t_high is not None and t_high <= t)  # larger threshold: earlier


@pytest.mark.parametrize("field,value,message", [
    ("ratios", (0.5, 1.0), r"config.tune.ratios=\(0.5, 1.0\) is invalid: each p must be in"),
    ("thresholds", (0.0,), r"config.tune.thresholds=\(0.0,\) is invalid: each must be in"),
    ("oracle", "hyperband", r"config.tune.oracle='hyperband' is invalid: must be one of grid"),
    ("seed", 0, r"config.tune.seed=0 is invalid: must be an int >= 1"),
    ("retrain_epochs", 0, r"config.tune.retrain_epochs=0 is invalid: must be an int >= 1"),
])
def test_tune_config_errors_name_the_field_and_the_allowed_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        tuning.TuneConfig(**{field: value})


def test_unknown_tune_field_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"config.tune.ratio \(did you mean config.tune.ratios"):
        tuning.TuneConfig.from_dict({"ratio": (0.5,)})


def test_ratios_auto_needs_a_budget_and_a_budget_needs_ratios_auto():
    with pytest.raises(ValueError, match=r"config.ratios='auto' is invalid: .* needs a budget"):
        eb_config.from_config_dict({"ratios": ("auto",)})
    with pytest.raises(ValueError, match=r"config.max_flops=1000.0 is invalid: a budget applies"):
        eb_config.from_config_dict({"ratios": (0.5,), "max_flops": 1000.0})
    cfg = eb_config.from_config_dict({"ratios": "auto", "max_latency_ms": 2.0})
    assert cfg.ratios == eb_config.AUTO_RATIOS and tuning.is_auto(cfg)
    assert tuning.is_auto(_config(10)) and not tuning.is_auto({"ratios": (0.5,)})
    with pytest.raises(ValueError, match=r"config.ratios=\(0.5,\): tuning chooses p itself"):
        tuning.split_config({"ratios": (0.5,)})


def test_written_config_file_round_trips_to_the_same_run_config(tmp_path):
    cfg = eb_config.from_config_dict({"model": "convnet", "ratios": (0.6,), "lr": 0.05,
                                      "lr_milestones": (0.25, 0.5), "epochs": 12})
    path = tuning_report.write_config(str(tmp_path / "chosen.py"), cfg, "a note")
    spec = importlib.util.spec_from_file_location("chosen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert eb_config.from_config_dict(module.get_config()) == cfg
    assert eb_config.from_config_dict(module.get_config("smoke")) == \
        eb_config.from_config_dict({**cfg.to_dict(), "smoke": True, "round_multiple": "none"})
    assert "a note" in module.__doc__ and path in module.__doc__


def test_a_diverging_candidate_scores_worst_instead_of_stopping_the_search(tmp_path,
                                                                          monkeypatch):
    from eb_tf.compat import keras_tuner  # pylint: disable=import-outside-toplevel
    from eb_tf.pipeline import health  # pylint: disable=import-outside-toplevel
    splits = eb_tf.data.load("digits", batch_size=32, seed=0, train_subset=256)
    tuner = tuning.EBTuner(_config(_budget()), directory=str(tmp_path / "tune"),
                           splits=splits)

    def diverge(*_):
        raise health.TrainingDiverged("search: training diverged in epoch 2: ...")
    monkeypatch.setattr(tuner, "evaluate_candidate", diverge)
    hp = keras_tuner.HyperParameters()
    for name, value in (("ratio", 0.3), ("threshold", 0.1), ("l1", 1e-4), ("lr", 10.0)):
        hp.Fixed(name, value)
    trial = types.SimpleNamespace(hyperparameters=hp, trial_id="00")
    assert tuner.run_trial(trial) == {"score": tuning.INFEASIBLE_SCORE, "feasible": 0.0}

    def broken(*_):
        raise ValueError("config.model='nope' is not a known model")
    monkeypatch.setattr(tuner, "evaluate_candidate", broken)  # other errors still stop it
    with pytest.raises(keras_tuner.errors.FatalValueError, match="not a known model"):
        tuner.run_trial(trial)
