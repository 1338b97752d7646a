"""Tests of eb_tf.pipeline.bn_stats and of the draw's BN re-estimation (digits, seconds)."""
import os

import numpy as np
import pytest

from eb_tf import data
from eb_tf.compat import keras
from eb_tf.pipeline import bn_stats, build, costs, runner
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import draw as draw_lib
from eb_tf.pipeline import run_dir
from eb_tf.pruning.pruner import prune
from eb_tf.quantization import precision as precision_lib
from tests.pipeline_testlib import read_report, smoke_config

L = keras.layers


def _toy_model():
    """conv - frozen BN - relu - conv - BN - relu - nested(conv - BN - relu) - head."""
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(3, 3, padding="same", name="c1")(inp)
    frozen = L.BatchNormalization(name="frozen")
    frozen.trainable = False
    x = L.ReLU()(frozen(x))
    x = L.Conv2D(4, 3, padding="same", name="c2")(x)
    x = L.ReLU(name="r2")(L.BatchNormalization(name="bn2", momentum=0.5)(x))
    inner_in = keras.Input((6, 6, 4))
    y = L.Conv2D(5, 1, name="c3")(inner_in)
    inner = keras.Model(inner_in, L.ReLU()(L.BatchNormalization(name="bn3")(y)), name="inner")
    out = L.Dense(3, name="fc")(L.GlobalAveragePooling2D()(inner(x)))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    for bn in (frozen, model.get_layer("bn2"), inner.get_layer("bn3")):
        n = bn.moving_mean.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
        bn.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
        bn.moving_mean.assign(rng.normal(0, 3, n).astype(np.float32))      # stale
        bn.moving_variance.assign(rng.uniform(5, 9, n).astype(np.float32))
    return model


def _batches(n=3, size=8):
    rng = np.random.default_rng(2)
    return [(3 * rng.normal(size=(size, 6, 6, 2)) + 1).astype(np.float32) for _ in range(n)]


def _expected_stats(model, batches):
    """{BN name: (mean, variance)} of each trainable BN's input over all batches, with
    every BN upstream in training mode, from sub-models of a copy (independent of
    bn_stats)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    inner = copy.get_layer("inner")
    to_bn2 = keras.Model(copy.inputs, copy.get_layer("bn2").input)
    to_inner = keras.Model(copy.inputs, copy.get_layer("r2").output)
    to_bn3 = keras.Model(inner.inputs, inner.get_layer("bn3").input)
    seen = {"bn2": [], "bn3": []}
    for x in batches:
        seen["bn2"].append(to_bn2(x, training=True).numpy())
        seen["bn3"].append(to_bn3(to_inner(x, training=True), training=True).numpy())
    out = {}
    for name, values in seen.items():
        v = np.concatenate(values).astype(np.float64).reshape(-1, values[0].shape[-1])
        out[name] = (v.mean(axis=0), v.var(axis=0))
    return out


def _bn(model, name):
    return model.get_layer("inner").get_layer(name) if name == "bn3" else model.get_layer(name)


def _non_stat_weights(model):
    """Every weight except the moving statistics of trainable BNs, by name."""
    stats = {id(v) for bn in bn_stats.trained_bn_layers(model)
             for v in (bn.moving_mean, bn.moving_variance)}
    return {w.name: w.numpy() for w in model.weights if id(w) not in stats}


def test_recalibrate_sets_each_trainable_bn_to_its_inputs_exact_mean_and_variance():
    model, batches = _toy_model(), _batches()
    expected = _expected_stats(model, batches)
    info = bn_stats.recalibrate(model, batches)
    assert info == {"batches": 3, "samples": 24, "layers": 2}
    for name, (mean, var) in expected.items():
        bn = _bn(model, name)
        np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-5, atol=1e-6)


def test_recalibrate_changes_nothing_but_the_moving_statistics_of_trainable_bns():
    model = _toy_model()
    before = _non_stat_weights(model)
    frozen = model.get_layer("frozen").moving_mean.numpy()
    bn_stats.recalibrate(model, [(x, np.zeros(8)) for x in _batches()])  # (x, y) batches
    after = _non_stat_weights(model)
    assert before.keys() == after.keys() and "frozen/moving_mean:0" in after
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    np.testing.assert_array_equal(model.get_layer("frozen").moving_mean.numpy(), frozen)
    assert "call" not in vars(model.get_layer("bn2"))  # the layer's own call again


def test_recalibrate_is_deterministic_and_rejects_no_batches():
    a = _toy_model()
    b = keras.models.clone_model(a)
    b.set_weights(a.get_weights())
    bn_stats.recalibrate(a, _batches())
    bn_stats.recalibrate(b, _batches())
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    with pytest.raises(ValueError, match="no batch"):
        bn_stats.recalibrate(a, [])


def test_calibration_batches_are_fixed_full_unaugmented_training_batches():
    splits = data.load("digits", batch_size=32, seed=3, train_subset=200)  # augment: shift
    first = [(x.numpy(), y.numpy()) for x, y in splits.calibration_batches(16)]
    assert [len(y) for _, y in first] == [32] * (200 // 32)   # full batches only
    again = [(x.numpy(), y.numpy()) for x, y in splits.calibration_batches(2)]
    assert len(again) == 2
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    # The eval view (no augmentation) of representative()'s fixed order.
    images = np.concatenate([x for x, _ in first])
    rep = np.concatenate([r[0] for r in splits.representative(len(images))])
    np.testing.assert_array_equal(images, rep)
    tiny = data.load("digits", batch_size=64, seed=3, train_subset=40)
    assert [len(y) for _, y in tiny.calibration_batches(16)] == [40]
    with pytest.raises(ValueError, match="batches >= 1"):
        splits.calibration_batches(0)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A digits/convnet search long enough to matter (6 s), then the draw."""
    workdir = str(tmp_path_factory.mktemp("bn") / "run")
    cfg = smoke_config(smoke=False, epochs=8, window=3)
    report = runner.run(cfg, workdir, phases=("search", "draw"), print_summary=False)
    return cfg, workdir, report


def _ticket(workdir):
    return draw_lib.load_model(os.path.join(workdir, "tickets", "p0.5", "model.keras"))


def test_draw_saves_the_exact_bn_statistics_of_the_calibration_batches(drawn):
    cfg, workdir, report = drawn
    rcfg = eb_config.from_config_dict(cfg)
    splits = build.load_splits(rcfg)
    ticket = _ticket(workdir)
    bns = bn_stats.trained_bn_layers(ticket)
    meta = report["ticket"]["0.5"]
    batches = min(draw_lib.CALIBRATION_BATCHES, splits.num_train // splits.batch_size)
    assert meta["bn_calibration"] == {"batches": batches, "samples": batches * splits.batch_size,
                                      "layers": len(bns),
                                      "flops": meta["flops"] * batches * splits.batch_size}
    probe = keras.Model(ticket.inputs, [bn.input for bn in bns])  # training mode: batch stats
    inputs = [probe(x, training=True) for x, _ in splits.calibration_batches(
        draw_lib.CALIBRATION_BATCHES)]
    for i, bn in enumerate(bns):
        v = np.concatenate([b[i].numpy() for b in inputs]).astype(np.float64)
        v = v.reshape(-1, v.shape[-1])
        np.testing.assert_allclose(_ticket(workdir).get_layer(bn.name).moving_mean.numpy(),
                                   v.mean(axis=0), rtol=1e-4, atol=1e-5, err_msg=bn.name)
        np.testing.assert_allclose(_ticket(workdir).get_layer(bn.name).moving_variance.numpy(),
                                   v.var(axis=0), rtol=1e-4, atol=1e-5, err_msg=bn.name)


def test_draw_changes_no_other_weight_of_the_pruned_ticket(drawn):
    _, workdir, report = drawn
    assert report["eb"]["0.5"]["found"]  # inherit: the weights of the EB epoch t
    dense = draw_lib.load_model(os.path.join(workdir, "search", "final.keras"))
    dense.load_weights(os.path.join(workdir, "search", "eb", "p0.5", "weights.h5"))
    masks = draw_lib.read_mask(os.path.join(workdir, "search", "eb", "p0.5", "mask.npz"))
    pruned = prune(precision_lib.strip_precision(dense), masks)
    expected, got = _non_stat_weights(pruned), _non_stat_weights(_ticket(workdir))
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_draw_records_accuracy_before_retraining_and_forward_flops(drawn):
    _, _, report = drawn
    meta = report["ticket"]["0.5"]
    accuracy, phase = meta["drawn_accuracy"], report["phases"]["draw"]
    assert accuracy["validation"] > accuracy["before_bn_calibration"]  # 0.32 vs 0.15
    assert accuracy["samples"] == 144  # the digits validation split, eval_batches=0
    assert accuracy["flops"] == 2 * meta["flops"] * accuracy["samples"]
    # Forward only (no x3 of training_flops): ticket FLOPs per sample x samples.
    assert phase["flops"] == meta["bn_calibration"]["flops"] == meta["flops"] * phase["samples"]
    assert phase["flops"] == costs.training_flops(meta["flops"], phase["samples"]) // 3
    assert phase["eval_flops"] == accuracy["flops"] and phase["epochs"] == 0
    assert report["total"]["flops"] == report["phases"]["search"]["flops"] + phase["flops"]


def test_draw_alone_loads_the_data_and_draws_the_same_ticket_again(drawn):
    cfg, workdir, report = drawn
    before = _ticket(workdir).get_weights()
    rd = run_dir.RunDir.open(workdir, eb_config.from_config_dict(cfg))
    rd.update_report(phases={"draw": {"done": False}})
    again = runner.run(cfg, workdir, phases=("draw",), print_summary=False)  # splits=None
    after = _ticket(workdir).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    for key in ("bn_calibration", "drawn_accuracy"):
        assert again["ticket"]["0.5"][key] == report["ticket"]["0.5"][key]
    assert again["phases"]["draw"]["flops"] == report["phases"]["draw"]["flops"]


def test_reinit_ticket_keeps_its_fresh_bn_statistics(tmp_path):
    workdir = str(tmp_path / "reinit")
    runner.run(smoke_config(retrain="reinit"), workdir, phases=("search", "draw"),
               print_summary=False)
    report = read_report(workdir)
    meta = report["ticket"]["0.5"]
    assert "reinit" in meta["bn_calibration"]["skipped"]
    assert meta["drawn_accuracy"]["before_bn_calibration"] is None
    assert report["phases"]["draw"]["flops"] == 0 and report["phases"]["draw"]["samples"] == 0
    for bn in bn_stats.trained_bn_layers(_ticket(workdir)):  # Keras' initial 0 / 1
        np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
        np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)
