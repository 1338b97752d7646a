"""report.md of a run folder and its plots (eb_tf.pipeline.run_report, eb_tf.pipeline.plots).

One smoke run (digits, convnet, T = 4, window 2) through `eb_tf.pipeline.run`; the plotted
series are checked against the files of its folder: the search's history.json, the
retrain checkpoint's history, report.json's EB epoch, distances and threshold, the mask
matrix and the ticket's meta.json.
"""
import math
import os
import re
import shutil

import numpy as np
import pytest

from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import mask_plots, plots, run_dir, run_report, runner
from tests.pipeline_testlib import smoke_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("report") / "run")
    cfg = smoke_config()
    report = runner.run(cfg, workdir, print_summary=False)
    return workdir, eb_config.from_config_dict(cfg), report


def _nan(values):
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def _line(ax, label):
    found = [line for line in ax.lines if line.get_label() == label]
    assert len(found) == 1, (label, [line.get_label() for line in ax.lines])
    return found[0]


def _retrain_history(workdir):
    return io_utils.read_json(os.path.join(workdir, "retrain", "p0.5", "ckpt",
                                           "state.json"))["history"]


def test_write_puts_report_md_and_the_pngs_it_links_in_the_run_folder(run):
    workdir, cfg, report = run
    path = run_report.write(workdir)
    assert path == os.path.join(workdir, "report.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["report/channels_p0.5.png", "report/heatmap_p0.5.png",
                             "report/mask_distance.png", "report/training.png"]
    for link in links:
        with open(os.path.join(workdir, link), "rb") as f:
            assert f.read(8) == PNG, link
    assert sorted(os.listdir(os.path.join(workdir, "report"))) == sorted(
        os.path.basename(link) for link in links)
    assert run_dir.summary_table(report) in text
    assert f"p=0.5 at epoch {report['eb']['0.5']['found_epoch']}" in text
    assert not [n for n in os.listdir(workdir) if n.startswith((".tmp-", ".old-"))]
    # A RunDir (what the runner holds) gives the same report.
    assert run_report.write(run_dir.RunDir(workdir, cfg)) == path


def test_training_curves_are_the_search_and_retrain_histories_with_the_eb_epoch(run):
    workdir, _, report = run
    search = io_utils.read_json(os.path.join(workdir, "search", "history.json"))
    retrain = _retrain_history(workdir)
    t = report["eb"]["0.5"]["found_epoch"]
    assert [h["epoch"] for h in search] == list(range(1, t + 1))
    assert [h["epoch"] for h in retrain] == list(range(t + 1, 5))  # inherit: t+1 .. T
    fig = run_report.figures(workdir)["training"]
    loss, accuracy = fig.axes[:2]
    for ax, metric in ((loss, "loss"), (accuracy, "accuracy")):
        for name, history in (("search", search), ("retrain p=0.5", retrain)):
            line = _line(ax, name)
            np.testing.assert_allclose(line.get_xdata(), [h["epoch"] for h in history])
            np.testing.assert_allclose(line.get_ydata(), [h[metric] for h in history])
            np.testing.assert_allclose(_line(ax, f"{name} (validation)").get_ydata(),
                                       [h[f"val_{metric}"] for h in history])
        assert list(_line(ax, "EB epoch p=0.5").get_xdata()) == [t, t]


def test_mask_distance_plot_has_the_eb_distances_threshold_and_eb_epoch(run):
    workdir, cfg, report = run
    entry = report["eb"]["0.5"]
    search = io_utils.read_json(os.path.join(workdir, "search", "history.json"))
    (ax,) = run_report.figures(workdir)["mask_distance"].axes
    line = ax.lines[0]
    assert line.get_label().startswith("p=0.5")
    np.testing.assert_array_equal(line.get_ydata(), _nan(entry["distances"]))
    np.testing.assert_array_equal(line.get_ydata(), _nan(h["eb_distance_p0.5"] for h in search))
    assert list(line.get_xdata()) == [h["epoch"] for h in search]
    assert list(_line(ax, f"threshold {cfg.threshold:g}").get_ydata()) == [cfg.threshold] * 2
    eb_line = _line(ax, f"EB epoch p=0.5: {entry['found_epoch']}")
    assert list(eb_line.get_xdata()) == [entry["found_epoch"]] * 2
    _, matrix = mask_plots.run_distance_matrix(workdir, 0.5)
    np.testing.assert_allclose(_line(ax, "p=0.5, to the previous epoch").get_ydata(),
                               np.diag(matrix, -1))


def test_heatmap_is_the_mask_matrix_with_the_eb_epoch_and_threshold_marked(run):
    workdir, cfg, report = run
    t = report["eb"]["0.5"]["found_epoch"]
    epochs, matrix = mask_plots.run_distance_matrix(workdir, 0.5)
    fig = run_report.figures(workdir)["heatmap_p0.5"]
    heat, bar = fig.axes
    np.testing.assert_array_equal(heat.images[0].get_array(), matrix)
    assert list(_line(heat, f"EB epoch {t}").get_xdata()) == [t, t]
    assert [list(line.get_ydata()) for line in bar.lines] == [[cfg.threshold] * 2]
    window = [p for p in heat.patches if p.get_label().startswith("window")]
    assert len(window) == 1 and window[0].get_width() == min(cfg.window, t)
    # The binary's heatmap carries the same marks, and still writes the matrix.
    out = os.path.join(workdir, "fig3.png")
    np.testing.assert_array_equal(mask_plots.plot_distance_matrix(workdir, 0.5, out), matrix)
    np.testing.assert_array_equal(np.load(os.path.join(workdir, "fig3.npy")), matrix)
    assert mask_plots.eb_marks(workdir, 0.5) == {"eb_epoch": t, "threshold": cfg.threshold,
                                                 "window": cfg.window}
    assert list(epochs) == list(range(1, t + 1))


def test_kept_channels_bars_are_the_ticket_meta(run):
    workdir, _, _ = run
    meta = io_utils.read_json(os.path.join(workdir, "tickets", "p0.5", "meta.json"))
    (ax,) = run_report.figures(workdir)["channels_p0.5"].axes
    total, kept = ax.containers
    assert [b.get_height() for b in kept] == [c["kept"] for c in meta["channels"]]
    assert [b.get_height() for b in total] == [c["total"] for c in meta["channels"]]
    assert [t.get_text() for t in ax.get_xticklabels()] == [c["key"] for c in meta["channels"]]


def test_a_search_only_folder_gets_a_report_without_the_ticket_sections(run, tmp_path):
    workdir, _, _ = run
    partial = str(tmp_path / "partial")
    shutil.copytree(workdir, partial)
    for name in ("tickets", "retrain", "report"):
        shutil.rmtree(os.path.join(partial, name))
    assert set(run_report.histories(partial)) == {"search"}
    run_report.write(partial)
    assert sorted(os.listdir(os.path.join(partial, "report"))) == [
        "heatmap_p0.5.png", "mask_distance.png", "training.png"]
    with open(os.path.join(partial, "report.md"), encoding="utf-8") as f:
        assert "Kept channels" not in f.read()


def test_write_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        run_report.write(str(tmp_path))


def test_plot_functions_return_figures_and_write_pngs_atomically(tmp_path):
    out = str(tmp_path / "d.png")
    fig = plots.mask_distances({"p=0.3": [None, 0.3, 0.05], "p=0.7": [None, 0.4, 0.2]}, 0.1,
                               {"p=0.3": 3, "p=0.7": None}, window=2, path=out)
    assert [line.get_label() for line in fig.axes[0].lines] == [
        "p=0.3 (max over the window of 2)", "p=0.7", "threshold 0.1", "EB epoch p=0.3: 3"]
    with open(out, "rb") as f:
        assert f.read(8) == PNG
    assert os.listdir(tmp_path) == ["d.png"]
    fig = plots.accuracy_vs_flops([{"label": "eb", "marker": "*", "flops": [1.0, 2.0],
                                    "accuracy": [0.9, 0.95], "notes": ["p=0.5", None]},
                                   {"label": "dense", "marker": "s", "flops": [3.0],
                                    "accuracy": [0.96]}])
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_offsets(),
                                  [[1.0, 0.9], [2.0, 0.95]])
    heat = plots.distance_heatmap([1, 2, 3], np.zeros((3, 3)), threshold=0.1)  # no border
    assert not heat.axes[0].collections and not heat.axes[0].lines


@pytest.mark.parametrize("losses, scale", [([2.3, 0.02], "log"), ([2.3, 2.27], "linear")])
def test_training_curves_use_a_log_loss_axis_over_a_range_of_more_than_10x(losses, scale):
    fig = plots.training_curves({"search": {"epochs": [1, 2], "loss": losses,
                                            "accuracy": [0.1, None]}}, {"EB epoch": 2})
    assert fig.axes[0].get_yscale() == scale
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), [0.1, math.nan])
    assert [line.get_label() for line in fig.axes[1].lines] == ["search", "EB epoch"]
