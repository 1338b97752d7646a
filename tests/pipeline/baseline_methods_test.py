"""The `snip` and `thinet` methods in the pipeline: their draws, costs, shared search, binary.

Each run is the quickstart smoke config (digits, convnet, T = 4). The masks are
recomputed here from the run folder's own files with eb_tf.baselines, the costs from
the phase records, never read back from what the draw says about itself.
"""
import os

import numpy as np
import pytest

import eb_tf
from eb_tf import io_utils, pipeline
from eb_tf.baselines import snip, thinet
from eb_tf.pipeline import build, config as eb_config, methods, trainer
from tests.pipeline_testlib import (check_report_consistency, load, read_report, run_binary,
                                    same_weights, smoke_config)

T = 4


@pytest.fixture(scope="module")
def snip_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("snip"))
    return workdir, pipeline.run(smoke_config(method="snip"), workdir, print_summary=False)


@pytest.fixture(scope="module")
def dense_and_thinet(tmp_path_factory):
    root = tmp_path_factory.mktemp("thinet")
    dense, shared, alone = (str(root / n) for n in ("dense", "shared", "alone"))
    pipeline.run(smoke_config(method="dense"), dense, print_summary=False)
    cfg = smoke_config(method="thinet")
    return (dense, pipeline.run(cfg, shared, print_summary=False, adopt_search=dense), shared,
            pipeline.run(cfg, alone, print_summary=False), alone)


def _splits():
    cfg = eb_config.from_config_dict(smoke_config(method="snip"))
    with build.determinism(cfg):
        return cfg, build.load_splits(cfg)


def test_snip_draws_from_the_initial_network_and_trains_the_ticket_t_epochs(snip_run):
    workdir, report = snip_run
    search, retrain = report["phases"]["search"], report["phases"]["retrain"]["by_ratio"]["0.5"]
    assert (search["epochs"], search["samples"], search["flops"]) == (0, 0, 0)
    assert report["eb"]["0.5"]["epoch"] == 0 and retrain["epochs"] == T
    meta = io_utils.read_json(os.path.join(workdir, "tickets", "p0.5", "meta.json"))
    assert (meta["epoch"], meta["retrain_start_epoch"]) == (0, 0)
    initial = load(os.path.join(workdir, "search", "final.keras"))
    fresh = build.build_dense_model(eb_config.from_config_dict(smoke_config(method="snip")),
                                    _splits()[1])
    assert same_weights(initial, fresh)                      # nothing was trained
    cfg, splits = _splits()
    expected = snip.snip_masks(initial, 0.5, splits.calibration_batches(cfg.snip_batches),
                               loss=trainer.training_loss(initial, splits)).masks
    drawn = np.load(os.path.join(workdir, "tickets", "p0.5", "mask.npz"))
    assert set(drawn.files) == set(expected)
    for key, mask in expected.items():
        np.testing.assert_array_equal(drawn[key], mask)
    check_report_consistency(workdir, report)


def test_snip_costs_r_plus_its_scoring_passes(snip_run):
    workdir, report = snip_run
    cfg, splits = _splits()
    ticket, draw = report["ticket"]["0.5"], report["phases"]["draw"]
    dense_flops = report["phases"]["search"]["forward_flops_per_sample"]
    images = min(cfg.snip_batches, splits.num_train // cfg.batch_size) * cfg.batch_size
    assert ticket["scoring"]["samples"] == images
    assert ticket["scoring"]["flops"] == draw["scoring_flops"] == 3 * dense_flops * images
    s = ticket["scoring"]["flops"] / (3 * dense_flops * T * trainer.samples_per_epoch(splits))
    assert ticket["scoring"]["x_dense"] == pytest.approx(s)
    assert draw["flops"] == draw["scoring_flops"] + ticket["bn_calibration"]["flops"]
    r = ticket["flops"] / dense_flops
    assert methods.get("snip").predicted_cost(T, r, scoring=s) == pytest.approx(r + s)


def test_thinet_keeps_the_ns_widths_and_prunes_its_rescaled_network(dense_and_thinet):
    _, _, shared, report, alone = dense_and_thinet
    for workdir in (shared, alone):
        dense = load(os.path.join(workdir, "search", "final.keras"))
        ns = eb_tf.channel_masks(dense, 0.5)
        drawn = np.load(os.path.join(workdir, "tickets", "p0.5", "mask.npz"))
        assert {k: int(drawn[k].sum()) for k in drawn.files} == \
            {k: int(m.sum()) for k, m in ns.items()}
        cfg, splits = _splits()
        images = [x for x, _ in splits.calibration_batches(8)]
        expected = thinet.thinet_masks(dense, ns, images, seed=cfg.seed)
        for key, mask in expected.masks.items():
            np.testing.assert_array_equal(drawn[key], mask)
        ticket = load(os.path.join(workdir, "tickets", "p0.5", "model.keras"))
        pruned = eb_tf.prune(expected.model, expected.masks)
        head = [l.name for l in ticket.layers if l.weights][-1]   # not BN-recalibrated
        np.testing.assert_allclose(ticket.get_layer(head).get_weights()[0],
                                   pruned.get_layer(head).get_weights()[0], rtol=1e-6)
        unscaled = eb_tf.prune(dense, expected.masks).get_layer(head).get_weights()[0]
        assert not np.allclose(ticket.get_layer(head).get_weights()[0], unscaled)
    assert report["phases"]["search"]["epochs"] == T
    assert report["phases"]["retrain"]["by_ratio"]["0.5"]["epochs"] == T


def test_thinet_adopts_the_dense_search_and_counts_its_cost(dense_and_thinet):
    dense_dir, shared_report, shared, alone_report, alone = dense_and_thinet
    dense = read_report(dense_dir)["phases"]["search"]
    adopted = shared_report["phases"]["search"]
    assert adopted["adopted_from"] == os.path.join("..", "dense")
    assert {k: v for k, v in adopted.items() if k != "adopted_from"} == dense
    assert same_weights(load(os.path.join(shared, "search", "final.keras")),
                        load(os.path.join(dense_dir, "search", "final.keras")))
    # the run that trained its own search trained the same network (op determinism)
    assert same_weights(load(os.path.join(alone, "search", "final.keras")),
                        load(os.path.join(dense_dir, "search", "final.keras")))
    assert alone_report["final"]["0.5"] == pytest.approx(shared_report["final"]["0.5"])
    ticket = shared_report["ticket"]["0.5"]
    r = ticket["flops"] / dense["forward_flops_per_sample"]
    s = ticket["scoring"]["x_dense"]
    assert methods.get("thinet").predicted_cost(T, r, scoring=s) == pytest.approx(1 + r + s)
    check_report_consistency(shared, shared_report)


def test_no_l1_on_the_gammas_of_snip_and_thinet(dense_and_thinet, snip_run):
    for workdir in (dense_and_thinet[2], snip_run[0]):
        final = load(os.path.join(workdir, "retrain", "p0.5", "final.keras"))
        for ref in eb_tf.bn_layers(final):
            reg = ref.layer.gamma_regularizer
            assert reg is None or not getattr(reg, "l1", 0.0), (workdir, ref.key)


def test_adopt_refuses_a_search_of_another_config(dense_and_thinet, tmp_path):
    cfg = smoke_config(method="thinet", lr=0.01)
    with pytest.raises(ValueError, match=r"trained another config \(config.lr: 0.05 vs 0.01\)"):
        pipeline.run(cfg, str(tmp_path / "x"), print_summary=False,
                     adopt_search=dense_and_thinet[0])
    with pytest.raises(ValueError, match="holds no finished search to adopt"):
        pipeline.run(smoke_config(method="thinet"), str(tmp_path / "y"), print_summary=False,
                     adopt_search=str(tmp_path))


@pytest.mark.parametrize("field", ["snip_batches", "thinet_images"])
def test_config_fields_are_validated(field):
    with pytest.raises(ValueError, match=rf"config.{field}=0 is invalid: must be in \[1, inf\]"):
        eb_config.from_config_dict({field: 0})


def test_records_and_predicted_costs():
    snip_record, thinet_record = methods.get("snip"), methods.get("thinet")
    assert (snip_record.draws_at_init, snip_record.search_l1, snip_record.retrain) == \
        (True, False, "trained")
    assert (thinet_record.search_as, thinet_record.search_l1) == ("dense", False)
    assert snip_record.select is not None and thinet_record.select is not None
    assert snip_record.predicted_cost(160, 0.4, scoring=0.002) == pytest.approx(0.402)
    assert thinet_record.predicted_cost(160, 0.4, scoring=0.002) == pytest.approx(1.402)
    with pytest.raises(ValueError, match="scoring=-1 must be >= 0"):
        snip_record.predicted_cost(160, 0.4, scoring=-1)


def test_eb_train_runs_snip(tmp_path):
    proc = run_binary("eb_train", "--config=configs/quickstart.py:smoke", "--config.method=snip",
                      "--config.verbose=0", "--config.tensorboard=False",
                      f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EB Train summary (method=snip" in proc.stdout
    assert read_report(str(tmp_path))["ticket"]["0.5"]["scoring"]["samples"] > 0
