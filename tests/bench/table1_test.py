"""Tests of the Table 1 study (eb_tf.bench.table1, eb_tf.bench.studies, eb_bench's dispatch).

One `table1_smoke` study (digits, convnet, T = 4, both lr schedules) runs per module. The
tests recompute every figure of its table1.json from the run folders: the EB epochs from
the searches' report.json, the draw epochs by hand, FLOPs ratios from the saved models,
test accuracies by evaluating the retrained models, mask distances from the searches'
mask histories; then rerun the finished study through the binary (nothing trains again)
and a study with one ticket folder removed (only that ticket trains, to the same result).
"""
import os
import shutil

import numpy as np
import pytest

import eb_tf
from configs import bench_cifar10
from eb_tf import bench, io_utils
from eb_tf.bench import benchmark, studies, table1
from eb_tf.pipeline import build, draw, plots, run_dir, trainer
from eb_tf.pipeline import config as eb_config
from tests.pipeline_testlib import load, run_binary

T = 4  # the smoke budget


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("table1") / "smoke")
    return workdir, bench.run_study(bench_cifar10.get_config("table1_smoke"), workdir)


def _json(*parts):
    return io_utils.read_json(os.path.join(*parts))


def _expected_epochs(t):
    wanted = ([t, 2 * t] if t else []) + [T // 2, T]
    return sorted({min(max(e, 1), T) for e in wanted})


def test_every_figure_is_recomputed_from_the_run_folders(study):
    workdir, result = study
    assert _json(workdir, "table1.json") == result
    assert [s["schedule"] for s in result["schedules"]] == ["paper", "large_lr"]
    splits = build.load_splits(eb_config.from_config_dict(
        _json(workdir, "paper", "search", "config.json")["config"]))
    for s in result["schedules"]:
        search = os.path.join(workdir, s["schedule"], "search")
        report = _json(search, "report.json")
        entry = report["eb"]["0.5"]
        assert s["eb_epoch"] == entry["found_epoch"] and s["found"] == entry["found"]
        assert report["phases"]["search"]["epochs"] == T == s["search_epochs"]  # ran to T
        searched = _json(search, "config.json")["config"]
        assert (searched["lr"], searched["warmup_epochs"]) == (s["lr"], 0)  # smoke: no warm-up
        assert searched["keep_training"] and searched["draw_epochs"] == list(range(1, T + 1))
        epochs = _expected_epochs(s["eb_epoch"])
        assert s["draw_epochs"] == [t["epoch"] for t in s["tickets"]] == epochs
        assert sorted(os.listdir(os.path.dirname(search))) == sorted(
            ["search"] + [f"e{e}" for e in epochs])
        history = trainer.read_mask_history(os.path.join(search, "search", "masks", "p0.5.npz"))
        assert history["epochs"].tolist() == list(range(1, T + 1))
        masks = dict(zip(history["epochs"].tolist(), history["masks"]))
        dense_flops = eb_tf.count_flops(load(os.path.join(search, "search", "final.keras"))).total
        for t in s["tickets"]:
            sub = os.path.join(workdir, t["run_dir"])
            sub_report = _json(sub, "report.json")
            assert sub_report["phases"]["draw"]["source"] == {
                "search": os.path.join("..", "search"), "epoch": t["epoch"]}
            kept = draw.read_mask(os.path.join(search, "search", "eb", f"epoch{t['epoch']}",
                                               "p0.5", "mask.npz"))
            drawn = draw.read_mask(os.path.join(sub, "tickets", "p0.5", "mask.npz"))
            assert all(np.array_equal(kept[k], drawn[k]) for k in kept)  # smoke: exact masks
            flops = eb_tf.count_flops(load(os.path.join(sub, "tickets", "p0.5",
                                                        "model.keras"))).total
            assert t["flops"] == flops and t["flops_ratio"] == pytest.approx(
                flops / dense_flops, abs=1e-6)
            assert t["found"] == (t["epoch"] == s["eb_epoch"])
            ticket_cfg = eb_config.from_config_dict(_json(sub, "config.json")["config"])
            assert (ticket_cfg.epochs, ticket_cfg.lr, ticket_cfg.warmup_epochs) == (T, 0.1, 0)
            assert sub_report["ticket"]["0.5"]["retrain_start_epoch"] == 0
            assert t["retrain_epochs"] == T                      # the same schedule for all
            retrained = load(os.path.join(sub, "retrain", "p0.5", "final.keras"))
            assert trainer.evaluate(retrained, splits, ticket_cfg)["test"] == t["test_acc"]
            assert t["mask_distance_to_T"] == pytest.approx(
                np.mean(masks[t["epoch"]] != masks[T]))
            assert "EB" in t["roles"] if t["found"] else "EB" not in t["roles"]
        matrix = np.load(os.path.join(workdir, f"fig3_{s['schedule']}.npy"))
        assert matrix.shape == (T, T) and matrix[0, T - 1] == pytest.approx(
            np.mean(masks[1] != masks[T]))
    by = {s["schedule"]: s for s in result["schedules"]}
    checks = {(c["check"], c["schedule"]): c for c in result["checks"]}
    assert set(checks) == {("eb_vs_ground_truth", "paper"), ("eb_vs_ground_truth", "large_lr"),
                           ("larger_lr_no_later", "large_lr")}
    for name, s in by.items():
        accs = {t["epoch"]: t["test_acc"] for t in s["tickets"]}
        c = checks[("eb_vs_ground_truth", name)]
        assert c["ground_truth_acc"] == accs[T]
        assert c["passed"] == (s["found"] and accs[s["eb_epoch"]] >= accs[T] - 0.005)
    paper, large = by["paper"]["eb_epoch"], by["large_lr"]["eb_epoch"]
    assert checks[("larger_lr_no_later", "large_lr")]["passed"] == (
        large is not None and (paper is None or large <= paper))


def test_markdown_plot_and_heatmaps_are_written(study):
    workdir, result = study
    with open(os.path.join(workdir, "table1.md")) as f:
        md = f.read()
    assert md.startswith("# Table 1: tickets drawn at the EB epoch and later")
    assert sum(line.startswith(("- PASS", "- FAIL")) for line in md.splitlines()) == \
        len(result["checks"])
    for c in result["checks"]:
        if c["check"] == "eb_vs_ground_truth" and c["eb_acc"] is not None:
            assert f"retrains to {c['eb_acc']:.4f}" in md
    for s in result["schedules"]:
        for t in s["tickets"]:
            assert f"| {t['epoch']} | {', '.join(t['roles'])} | {t['flops_ratio']:.3f} |" in md
    for name in ["table1.png"] + [s["heatmap"] for s in result["schedules"]]:
        with open(os.path.join(workdir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_binary_rerun_skips_every_finished_sub_run(study):
    workdir, result = study
    folders = {os.path.join(workdir, s["run_dir"]): os.path.join("search", "final.keras")
               for s in result["schedules"]}
    folders.update({os.path.join(workdir, t["run_dir"]): os.path.join("retrain", "p0.5",
                                                                      "final.keras")
                    for s in result["schedules"] for t in s["tickets"]})
    finals = [os.path.join(folder, final) for folder, final in folders.items()]
    before = {p: os.stat(p).st_mtime_ns for p in finals}
    reports = {f: _json(f, "report.json") for f in folders}
    proc = run_binary("eb_bench", "--config=configs/bench_cifar10.py:table1_smoke",
                      f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# Table 1: tickets drawn at the EB epoch and later" in proc.stdout
    assert {p: os.stat(p).st_mtime_ns for p in finals} == before       # nothing retrained
    assert {f: _json(f, "report.json") for f in folders} == reports
    again = _json(workdir, "table1.json")
    assert again["schedules"] == result["schedules"] and again["checks"] == result["checks"]


def test_a_missing_ticket_is_redrawn_and_retrained_alone_to_the_same_result(study, tmp_path):
    workdir, result = study
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    ticket = result["schedules"][0]["tickets"][0]
    shutil.rmtree(os.path.join(copy, ticket["run_dir"]))
    others = [os.path.join(copy, t["run_dir"], "retrain", "p0.5", "final.keras")
              for s in result["schedules"] for t in s["tickets"] if t is not ticket]
    before = {p: os.stat(p).st_mtime_ns for p in others}
    again = table1.run_table1(bench_cifar10.get_config("table1_smoke"), copy)
    assert {p: os.stat(p).st_mtime_ns for p in others} == before
    def figures(r):   # all but the wall-clock of the ticket trained again
        return [[{k: v for k, v in t.items() if k != "retrain_seconds"} for t in s["tickets"]]
                for s in r["schedules"]]
    assert figures(again) == figures(result)       # op determinism: the same ticket
    assert again["checks"] == result["checks"]


def test_bad_input_is_a_one_line_error_naming_the_field(tmp_path):
    cfg = bench_cifar10.get_config("table1_smoke")
    cfg.study = "tabel1"
    with pytest.raises(ValueError, match=r"^config.study='tabel1' is invalid: must be one of "
                                         r"'methods', 'table1'$"):
        bench.run_study(cfg, str(tmp_path))
    with pytest.raises(ValueError, match=r"config.table1_schedules='paper,huge' is invalid"):
        bench.BenchOptions(table1_schedules="paper,huge")
    with pytest.raises(ValueError, match=r"config.table1_retrain_epochs=-1 is invalid"):
        bench.BenchOptions(table1_retrain_epochs=-1)
    cfg.study, cfg.ratios = "table1", (0.3, 0.5)
    with pytest.raises(ValueError, match=r"config.ratios=\(0.3, 0.5\) is invalid for "
                                         "config.study='table1'"):
        table1.run_table1(cfg, str(tmp_path))
    proc = run_binary("eb_bench", "--config=configs/bench_cifar10.py:table1_smoke",
                      f"--workdir={tmp_path / 'bad'}", "--config.study=tabel1")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "config.study='tabel1' is invalid" in last and "Traceback" not in proc.stderr


def test_draw_saved_names_draw_epochs_when_the_search_kept_no_such_epoch(study, tmp_path):
    workdir, _ = study
    values, options = benchmark.split_config(bench_cifar10.get_config("table1_smoke"))
    cfg = table1.retrain_config(values, options.table1_retrain_epochs)
    rd = run_dir.RunDir.open(str(tmp_path / "ticket"), cfg)
    with pytest.raises(ValueError, match=r"kept no weights of epoch 9 .* config.draw_epochs"):
        draw.draw_saved(cfg, rd, os.path.join(workdir, "paper", "search"), 9, splits=None)


def test_draw_epochs_clip_to_T_and_deduplicate():
    assert table1.draw_epochs(15, 60) == [{"epoch": 15, "roles": ["EB"]},
                                          {"epoch": 30, "roles": ["2xEB", "T/2"]},
                                          {"epoch": 60, "roles": ["T"]}]
    assert [d["epoch"] for d in table1.draw_epochs(40, 60)] == [30, 40, 60]
    assert table1.draw_epochs(40, 60)[-1]["roles"] == ["2xEB", "T"]
    assert table1.draw_epochs(None, 60) == [{"epoch": 30, "roles": ["T/2"]},
                                            {"epoch": 60, "roles": ["T"]}]
    assert table1.draw_epochs(1, 1) == [{"epoch": 1, "roles": ["EB", "2xEB", "T/2", "T"]}]


def test_profiles_studies_and_configs():
    assert tuple(studies.STUDIES) == benchmark.STUDY_NAMES
    paper, full = bench_cifar10.get_config("paper"), bench_cifar10.get_config("table1")
    assert full.study == "table1" and paper.study == "methods"
    same = ("dataset", "model", "width", "epochs", "batch_size", "ratios", "lr", "l1",
            "weight_decay", "threshold", "window", "eval_batches", "train_subset")
    assert {k: full[k] for k in same} == {k: paper[k] for k in same}
    values, options = benchmark.split_config(full)
    assert options.table1_schedules == ("paper", "large_lr")
    search = table1.search_config(values, "large_lr")
    assert (search.lr, search.warmup_epochs, search.keep_training, search.epochs) == (
        0.5, 5, True, 60)
    assert search.draw_epochs == tuple(range(1, 61)) and search.method == "eb"
    ticket = table1.retrain_config(values, 0)
    assert (ticket.epochs, ticket.lr, ticket.lr_milestones, ticket.warmup_epochs) == (
        60, 0.1, (0.5, 0.75), 0)
    assert table1.retrain_config(values, 30).epochs == 30
    smoke = bench_cifar10.get_config("table1_smoke")
    assert (smoke.study, smoke.dataset, smoke.model, smoke.smoke) == (
        "table1", "digits", "convnet", True)


def test_accuracy_vs_draw_epoch_draws_one_line_per_schedule_and_stars_the_eb_ticket(tmp_path):
    out = str(tmp_path / "t1.png")
    fig = plots.accuracy_vs_draw_epoch(
        {"paper": {"epochs": [15, 30, 60], "accuracy": [0.84, 0.85, None], "eb_epoch": 15},
         "large_lr": {"epochs": [30, 60], "accuracy": [0.8, 0.81], "eb_epoch": None}}, path=out)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["paper", "large_lr"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.84, 0.85, np.nan])
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[15, 0.84]])
    assert len(ax.collections) == 1        # no EB ticket for large_lr: no star
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
