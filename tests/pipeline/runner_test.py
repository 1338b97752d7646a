"""End-to-end tests of eb_tf.pipeline.runner on tiny real data (embedded digits, mock tfds)."""
import os

import numpy as np
import pytest

import eb_tf
from eb_tf import io_utils
from eb_tf.pipeline import runner, schedules
from eb_tf.sparsity import early_bird
from tests.pipeline_testlib import check_report_consistency, load, same_weights, smoke_config


def test_eb_run_end_to_end_report_files_and_budget(tmp_path):
    workdir = str(tmp_path / "run")
    report = runner.run(smoke_config(tensorboard=True), workdir, print_summary=False)
    assert report["schema_version"] == 1 and report["method"] == "eb"
    eb_entry = report["eb"]["0.5"]
    assert eb_entry["found"] and 2 <= eb_entry["epoch"] < 4  # window 2, T = 4
    assert eb_entry["distances"][-1] <= 0.1
    phases = report["phases"]
    for name in ("search", "draw", "retrain"):
        assert {"epochs", "seconds", "flops", "precision", "energy"} <= set(phases[name])
    # inherit: search stops at t, retrain continues t -> T: one budget of T epochs.
    assert phases["search"]["epochs"] == eb_entry["epoch"]
    assert phases["retrain"]["epochs"] == 4 - eb_entry["epoch"]
    ticket = report["ticket"]["0.5"]
    assert {"params", "flops", "per_layer"} <= set(ticket)
    assert ticket["retrain_start_epoch"] == eb_entry["epoch"]
    assert set(report["final"]["0.5"]) >= {"validation", "test", "model"}
    check_report_consistency(workdir, report)
    for path in ("config.json", "versions.json", "search/final.keras", "tickets/p0.5/mask.npz",
                 "retrain/p0.5/final.keras", "search/masks/p0.5.npz", "tb/search"):
        assert os.path.exists(os.path.join(workdir, path)), path
    # The drawn mask is the EarlyBird mask of epoch t.
    ticket_dir = eb_tf.load_ticket(os.path.join(workdir, "tickets", "p0.5"))
    with np.load(os.path.join(workdir, "search", "eb", "p0.5", "mask.npz")) as eb_mask:
        assert all(np.array_equal(ticket_dir.masks[k], eb_mask[k]) for k in eb_mask.files)
    # Per-epoch history and masks (the Fig. 3 matrix) of the search.
    t = eb_entry["epoch"]
    history = io_utils.read_json(os.path.join(workdir, "search", "history.json"))
    assert [h["epoch"] for h in history] == list(range(1, t + 1))
    assert history[0]["eb_distance_p0.5"] is None
    assert [h["lr"] for h in history] == pytest.approx(
        [schedules.step_lr(e, 0.05, 4) for e in range(t)])   # 0.05, /10 from epoch 3
    from eb_tf.pipeline import mask_plots
    epochs, matrix = mask_plots.run_distance_matrix(workdir, 0.5)
    assert list(epochs) == list(range(1, t + 1)) and matrix.shape == (t, t)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    assert matrix[t - 1, t - 2] == pytest.approx(history[t - 1]["eb_distance_p0.5"])
    # A finished run is not trained again: the report comes back unchanged.
    again = runner.run(smoke_config(verbose=1, tensorboard=True), workdir,
                          print_summary=False)
    assert again["phases"] == report["phases"] and again["final"] == report["final"]


def test_dense_baseline_trains_t_epochs_without_l1_or_pruning(tmp_path):
    workdir = str(tmp_path / "dense")
    report = runner.run(smoke_config(method="dense"), workdir, print_summary=False)
    assert report["phases"]["search"]["epochs"] == 4 and report["eb"] == {}
    assert report["phases"]["draw"]["skipped"] == "method=dense"
    assert list(report["final"]) == ["dense"]
    assert "vs_dense" not in report  # the dense run is its own baseline
    model = load(workdir)
    assert eb_tf.count_flops(model).total == report["final"]["dense"]["flops"]
    regs = [layer.gamma_regularizer for layer in model.layers if hasattr(layer, "gamma")]
    assert regs and all(r is None or not getattr(r, "l1", 0.0) for r in regs)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ns", "lt"])
def test_ns_and_lt_prune_at_t_and_retrain_t_epochs(tmp_path, method):
    workdir = str(tmp_path / method)
    report = runner.run(smoke_config(method=method), workdir, print_summary=False)
    assert report["phases"]["search"]["epochs"] == 4        # no early stop
    assert report["phases"]["retrain"]["epochs"] == 4       # T more epochs
    assert report["ticket"]["0.5"]["retrain_start_epoch"] == 0
    check_report_consistency(workdir, report)
    if method == "lt":  # rewound to the initialisation: kept slices of the init kernel
        ticket = eb_tf.load_ticket(os.path.join(workdir, "tickets", "p0.5"))
        dense = load(os.path.join(workdir, "search", "final.keras"))
        dense.load_weights(os.path.join(workdir, "search", "weights_e0.h5"))
        keep = ticket.masks["bn1"]
        np.testing.assert_array_equal(ticket.model.get_layer("conv1").kernel.numpy(),
                                      dense.get_layer("conv1").kernel.numpy()[..., keep])


@pytest.mark.slow
def test_reinit_and_rewind_start_from_their_weights(tmp_path):
    rewind = runner.run(smoke_config(retrain="rewind", rewind_epoch=1, keep_training=True),
                           str(tmp_path / "rewind"), phases=("search", "draw"),
                           print_summary=False)
    assert rewind["ticket"]["0.5"]["retrain_start_epoch"] == 1
    assert os.path.exists(tmp_path / "rewind" / "search" / "weights_e1.h5")
    reinit = runner.run(smoke_config(retrain="reinit"), str(tmp_path / "reinit"),
                           phases=("search", "draw"), print_summary=False)
    assert reinit["ticket"]["0.5"]["retrain_start_epoch"] == 0
    inherit = runner.run(smoke_config(), str(tmp_path / "inherit"),
                            phases=("search", "draw"), print_summary=False)
    a = load(str(tmp_path / "inherit" / "tickets" / "p0.5"))
    b = load(str(tmp_path / "reinit" / "tickets" / "p0.5"))
    assert [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]
    assert not same_weights(a, b)
    assert inherit["ticket"]["0.5"]["flops"] == reinit["ticket"]["0.5"]["flops"]


@pytest.mark.slow
def test_no_ticket_draws_at_the_last_epoch_and_keep_training_draws_chosen_epochs(tmp_path,
                                                                                 monkeypatch):
    original = early_bird.EarlyBird._push

    def never_close(self, ratio, mask):  # masks that never settle: no ticket emerges
        dist = original(self, ratio, mask)
        return None if dist is None else max(dist, 0.5)
    monkeypatch.setattr(early_bird.EarlyBird, "_push", never_close)
    workdir = str(tmp_path / "none")
    report = runner.run(smoke_config(draw_epochs=(2,)), workdir,
                           phases=("search", "draw"), print_summary=False)
    assert report["eb"]["0.5"]["found"] is False and report["eb"]["0.5"]["epoch"] == 4
    assert report["ticket"]["0.5"]["found"] is False
    assert report["ticket"]["0.5@e2"]["epoch"] == 2
    assert os.path.exists(os.path.join(workdir, "tickets", "p0.5_e2", "model.keras"))


@pytest.mark.parametrize("override, message", [
    (dict(method="prune"), "config.method='prune' is invalid"),
    (dict(ratios=(1.5,)), "config.ratios=1.5 is invalid: must be in (0, 1)"),
    (dict(epochs=-2), "config.epochs=-2 is invalid"),
    (dict(model="vgg17"), "config.model='vgg17' is not a known model"),
])
def test_bad_config_fails_before_anything_is_written(tmp_path, override, message):
    cfg = smoke_config().to_dict()
    cfg.update(override)
    with pytest.raises(ValueError) as info:
        runner.run(cfg, str(tmp_path / "bad"), print_summary=False)
    assert message in str(info.value)
    assert not os.path.exists(tmp_path / "bad")


def test_phases_need_their_inputs(tmp_path):
    with pytest.raises(ValueError, match="draw needs a finished search"):
        runner.run(smoke_config(), str(tmp_path / "r"), phases=("draw",))
    with pytest.raises(ValueError, match=r"phases=\('train',\): each must be one of"):
        runner.run(smoke_config(), str(tmp_path / "r"), phases=("train",))


def test_mock_tfds_cifar10_end_to_end(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = smoke_config(dataset="cifar10", train_subset=64, batch_size=16, eval_batches=1)
    with tfds.testing.mock_data(num_examples=96):
        report = runner.run(cfg, str(tmp_path / "c10"), print_summary=False)
    assert report["ticket"]["0.5"]["flops"] < report["phases"]["draw"]["dense"]["flops"]
    assert report["phases"]["search"]["samples"] == 64 * report["phases"]["search"]["epochs"]
    check_report_consistency(str(tmp_path / "c10"), report)


@pytest.mark.slow
def test_export_phase_writes_tflite_of_every_final_model(tmp_path):
    workdir = str(tmp_path / "exp")
    report = runner.run(smoke_config(export="float32"), workdir, print_summary=False)
    assert report["phases"]["export"]["done"] and report["phases"]["export"]["models"] == ["0.5"]
    path = os.path.join(workdir, "export", "0.5", "model_float32.tflite")
    assert os.path.getsize(path) > 0
    assert report["export"]["float32"]["models"]["0.5"]["size_bytes"] == os.path.getsize(path)


@pytest.mark.slow
def test_round_multiple_grows_the_ticket_widths(tmp_path):
    plain = runner.run(smoke_config(), str(tmp_path / "plain"), phases=("search", "draw"),
                          print_summary=False)["ticket"]["0.5"]
    rounded = runner.run(smoke_config(round_multiple=4), str(tmp_path / "round"),
                            phases=("search", "draw"), print_summary=False)["ticket"]["0.5"]
    assert rounded["round_multiple"] == 4
    assert rounded["channels_kept"] >= plain["channels_kept"]
    model = load(str(tmp_path / "round" / "tickets" / "p0.5"))
    widths = [layer.filters for layer in model.layers if hasattr(layer, "filters")]
    assert widths and all(w % 4 == 0 for w in widths), widths



def test_run_refuses_unresolved_ratios_auto_and_names_the_resolver(tmp_path):
    cfg = {**smoke_config().to_dict(), "ratios": "auto", "max_flops": 1e5,
           "tune": {"ratios": [0.3, 0.5]}}  # a tuning config, as eb_tune takes it
    with pytest.raises(ValueError, match=r"config.ratios='auto' is resolved before the "
                                         r"pipeline runs: call eb_tf.tuning.resolve_auto"):
        runner.run(cfg, str(tmp_path))
    assert not os.listdir(tmp_path)  # refused before the run folder was touched


def test_bf16_retrain_trains_in_mixed_precision_and_saves_float32(tmp_path):
    workdir = str(tmp_path / "bf16")
    report = runner.run(smoke_config(retrain_precision="bf16"), workdir, print_summary=False)
    retrain = report["phases"]["retrain"]
    assert retrain["precision"] == "bf16" and retrain["done"]
    assert retrain["by_ratio"]["0.5"]["spec"]["dtype_policy"] == "mixed_bfloat16"
    final = eb_tf.compat.keras.models.load_model(os.path.join(workdir,
                                                              report["final"]["0.5"]["model"]))
    assert {layer.dtype_policy.name for layer in final.layers} == {"float32"}
    assert 0.0 <= report["final"]["0.5"]["test"] <= 1.0
