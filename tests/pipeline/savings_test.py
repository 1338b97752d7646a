"""Tests of eb_tf.pipeline.savings: report.json `vs_dense` and its lines in the summary."""
import re

import numpy as np
import pytest

import eb_tf
from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import run_dir, savings, trainer
from eb_tf.pipeline.build import load_splits
from tests.pipeline_testlib import load, smoke_config


def _printed(pattern, text):
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the summary:\n{text}"
    return found.group(1)


def test_quickstart_prints_the_ratios_to_dense_that_report_json_recomputes(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    cfg = smoke_config()
    report = eb_tf.pipeline.run(cfg, workdir)
    printed = capsys.readouterr().out
    section, phases = report["vs_dense"], report["phases"]
    dense, row = section["dense"], section["by_ratio"]["0.5"]
    # Dense training of the same T: 3 x forward FLOPs x samples per epoch x T, exactly.
    run_cfg = eb_config.from_config_dict(cfg)
    forward = eb_tf.count_flops(load(f"{workdir}/search/final.keras")).total
    assert dense["flops"] == 3 * forward * trainer.samples_per_epoch(load_splits(run_cfg)) * 4
    assert dense["epochs"] == 4 and dense["estimated"] is True
    # EB Train: search + draw + the ratio's retrain, as the benchmark counts a row.
    parts = [phases["search"], phases["draw"], phases["retrain"]["by_ratio"]["0.5"]]
    assert row["train"]["flops"] == sum(p["flops"] for p in parts)
    assert row["train"]["seconds"] == pytest.approx(sum(p["seconds"] for p in parts), abs=1e-3)
    # Dense wall-clock: the measured search + the remaining epochs at the median epoch.
    history = io_utils.read_json(f"{workdir}/search/history.json")
    t = report["eb"]["0.5"]["epoch"]
    median = float(np.median([h["seconds"] for h in history]))
    assert dense["seconds"] == pytest.approx(phases["search"]["seconds"] + median * (4 - t),
                                             abs=2e-3)
    # The printed ratios are the ones report.json's numbers give.
    assert _printed(r"training FLOPs \S+ vs \S+ = (\S+)x", printed) == \
        f"{row['train']['flops'] / dense['flops']:.3f}"
    assert _printed(r"wall-clock \S+ s vs ~\S+ s = (\S+)x", printed) == \
        f"{row['train']['seconds'] / dense['seconds']:.3f}"
    final = report["final"]["0.5"]
    assert dense["params"] == eb_tf.count_params(load(f"{workdir}/search/final.keras")).total
    assert _printed(r"ticket params [\d,]+ vs [\d,]+ \((\S+)x\)", printed) == \
        f"{final['params'] / dense['params']:.3f}"
    assert _printed(r"FLOPs/sample [\d,]+ vs [\d,]+ \((\S+)x\)", printed) == \
        f"{final['flops'] / forward:.3f}"
    assert row["accuracy"]["dense_at_draw"] == {
        "epoch": t, "validation": history[t - 1]["val_accuracy"]}
    assert row["accuracy"]["dense_trained_to_T"] is None
    # Speed: dense vs ticket, interleaved rounds, measured once.
    speed = section["speed"]
    assert speed["models"] == {"dense": "search/final.keras", "0.5": final["model"]}
    for kind in ("train_step", "inference_batch1"):
        times = speed[kind]
        assert times["dense"]["ms"] > 0 and times["0.5"]["ms"] > 0
        assert len(times["0.5"]["ms_rounds"]) == speed["rounds"] == 3
        speedup = times["dense"]["ms"] / times["0.5"]["ms"]
        assert _printed(rf"{'train step' if kind == 'train_step' else 'batch-1 inference'} "
                        r"(\S+x (?:faster|slower))", printed) == (
            f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower")
    assert speed["batch"] == min(run_cfg.batch_size, savings.MAX_TIMING_BATCH)
    # Resumed when finished: nothing trained, the speed is not measured again.
    again = eb_tf.pipeline.run(cfg, workdir, print_summary=False)
    assert again["vs_dense"] == section


def _report(method="eb", retrain=True):
    search = {"done": True, "epochs": 3, "samples": 300, "seconds": 6.0, "flops": 900_000,
              "forward_flops_per_sample": 1000, "precision": "fp32"}
    retrain_row = {"epochs": 7, "seconds": 3.5, "flops": 840_000, "samples": 700}
    phases = {"search": search, "draw": {"done": True, "epochs": 0, "seconds": 0.5, "flops": 0,
                                         "dense": {"params": 500, "flops": 1000}}}
    if retrain:
        phases["retrain"] = {"done": True, "by_ratio": {"0.5": retrain_row}}
    return {"method": method, "phases": phases, "eb": {"0.5": {"epoch": 3, "found": True}},
            "ticket": {"0.5": {"params": 100, "flops": 400, "dense_params": 500}},
            "final": {"0.5": {"params": 100, "flops": 400, "validation": 0.8, "test": 0.75,
                              "model": "retrain/p0.5/final.keras"}}}


HISTORY = [{"epoch": 1, "seconds": 4.0, "val_accuracy": 0.5},
           {"epoch": 2, "seconds": 1.0, "val_accuracy": 0.6},
           {"epoch": 3, "seconds": 1.0, "val_accuracy": 0.7}]


def test_compare_counts_t_measured_epochs_plus_the_rest_at_the_median():
    section = savings.compare(_report(), HISTORY, epochs=10)
    dense = section["dense"]
    assert dense["flops"] == 3 * 1000 * 100 * 10 and dense["samples_per_epoch"] == 100
    assert dense["seconds"] == 6.0 + 7 * 1.0 and dense["extrapolated_epochs"] == 7
    row = section["by_ratio"]["0.5"]
    assert row["train"] == {"phases": ["search", "draw", "retrain"], "flops": 1_740_000,
                            "seconds": 10.0}
    assert row["flops_ratio"] == 1_740_000 / 3_000_000 and row["seconds_ratio"] == 10.0 / 13.0
    assert row["ticket"]["params_ratio"] == 0.2 and row["ticket"]["flops_ratio"] == 0.4
    assert row["accuracy"]["dense_at_draw"] == {"epoch": 3, "validation": 0.7}
    assert section["label"] == "EB Train"


def test_compare_has_nothing_for_dense_or_an_unfinished_run():
    assert savings.compare(_report(method="dense"), HISTORY, epochs=10) is None
    assert savings.compare(_report(retrain=False), HISTORY, epochs=10)["by_ratio"] == {}
    unfinished = _report()
    unfinished["phases"]["search"]["done"] = False
    assert savings.compare(unfinished, HISTORY, epochs=10) is None


def test_summary_says_when_a_method_costs_more_than_dense():
    report = _report(method="ns")  # ns: T dense epochs + T ticket epochs
    report["phases"]["search"].update(epochs=10, samples=1000, seconds=10.0,
                                     flops=3_000_000)
    section = savings.compare(report, HISTORY, epochs=10)
    assert section["label"] == "ns" and section["dense"]["extrapolated_epochs"] == 0
    report["vs_dense"] = {**section, "speed": {"skipped": "ValueError: no input shape"}}
    table = run_dir.summary_table({**report, "config_hash": "abc"})
    assert "= 1.280x (ns costs 28.0% more)" in table
    assert "(speed not measured: ValueError: no input shape)" in table
    assert "faster" not in table
