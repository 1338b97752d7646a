"""Tests for eb_tf.EarlyBird: hook-driven with synthetic gammas, plus one real run."""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.sparsity import masks

# 10 channels: bn "a" has 6, bn "b" has 4. BASE gives channel i |gamma| (i + 1) / 10,
# so ratio 0.5 prunes channels 0-4; `_prune(*p)` makes the gammas whose 0.5-mask prunes
# exactly the channels p; `_swap` exchanges two channels' gammas.
BASE = np.arange(1, 11, dtype=np.float32) / 10.0


def _prune(*channels):
    out = np.ones(10, np.float32)
    out[list(channels)] = 0.01 * (1 + np.arange(len(channels)))
    return out


def _swap(order, i, j):
    out = order.copy()
    out[[i, j]] = out[[j, i]]
    return out


def _model():
    inp = keras.Input((3,))
    x = keras.layers.Dense(6, name="d1")(inp)
    x = keras.layers.BatchNormalization(name="a")(x)
    x = keras.layers.Dense(4, name="d2")(x)
    x = keras.layers.BatchNormalization(name="b")(x)
    return keras.Model(inp, x, name="tiny")


def _set(model, gammas10):
    model.get_layer("a").gamma.assign(gammas10[:6])
    model.get_layer("b").gamma.assign(gammas10[6:])


def _drive(eb, model, schedule, start=0):
    """Runs on_epoch_end over the schedule (one gamma vector per epoch); returns the logs."""
    all_logs = []
    for epoch, g in enumerate(schedule, start):
        _set(model, g)
        logs = {"loss": 1.0}
        eb.on_epoch_end(epoch, logs)
        all_logs.append(logs)
        if model.stop_training:
            break
    return all_logs


@pytest.fixture
def model():
    m = _model()
    m.stop_training = False
    return m


def _callback(model, **kw):
    eb = eb_tf.EarlyBird(**kw)
    eb.set_model(model)
    eb.on_train_begin()
    return eb


@pytest.mark.parametrize("threshold, found", [(0.2, 5), (0.19, 6)])
def test_ticket_at_the_exact_epoch_threshold_inclusive(model, threshold, found):
    moving = [_prune(3, 5, 6, 7, 8), _prune(0, 1, 7, 8, 9), _prune(0, 1, 2, 3, 9)]
    schedule = moving + [BASE] * 3 + [_prune(0, 1, 2, 3, 5)] * 2
    eb = _callback(model, ratios=(0.5,), threshold=threshold, window=3, stop_training=False)
    logs = _drive(eb, model, schedule)
    assert eb.distances[0.5] == [None, None, 0.8, 0.6, 0.2, 0.0, 0.2, 0.2]
    assert eb.found_epochs == {0.5: found} and eb.epochs == list(range(1, 9))
    assert eb.tickets[0.5]["a"].tolist() == [False] * 5 + [True]
    assert eb.tickets[0.5]["b"].tolist() == [True] * 4
    assert math.isnan(logs[1]["eb_distance_p0.5"]) and logs[2]["eb_distance_p0.5"] == 0.8
    assert logs[6]["eb_distance_p0.5"] == 0.2 and logs[6]["loss"] == 1.0
    assert eb.latest_masks[0.5]["a"].tolist() == [False] * 4 + [True, False]


def test_constant_gammas_give_the_ticket_at_window_never_before(model):
    eb = _callback(model, ratios=(0.3, 0.7), window=4, stop_training=False)
    _drive(eb, model, [BASE] * 6)
    assert eb.found_epochs == {0.3: 4, 0.7: 4}
    assert eb.distances[0.3] == [None, None, None, 0.0, 0.0, 0.0]


def test_the_threshold_is_compared_with_the_newest_mask_only(model):
    # Epochs 1 and 2 are 0.4 apart, but epoch 3 is 0.2 from each: the newest-vs-older
    # rule (the reference code's) finds the ticket at 3 with threshold 0.2.
    eb = _callback(model, ratios=(0.5,), threshold=0.2, window=3, stop_training=False)
    _drive(eb, model, [_prune(0, 1, 2, 3, 5), _prune(0, 1, 2, 4, 6), _prune(0, 1, 2, 3, 6)])
    assert eb.distances[0.5] == [None, None, 0.2] and eb.found_epochs[0.5] == 3


_SHARED = {}
_orders = st.lists(st.sampled_from([(4, 5), (3, 6), (0, 9), (4, 4), (2, 5)]), min_size=1,
                   max_size=10)


@given(_orders, st.integers(2, 4), st.sampled_from([0.1, 0.2, 0.4]))
def test_ticket_is_the_first_full_window_within_threshold(swaps, window, threshold):
    model = _SHARED.setdefault("model", _model())  # one model for all examples (speed)
    model.stop_training = False
    schedule = [_swap(BASE, i, j) for i, j in swaps]
    eb = _callback(model, ratios=(0.5,), threshold=threshold, window=window,
                   stop_training=False)
    _drive(eb, model, schedule)
    flat = [masks.flatten_mask(masks.masks_from_gammas({"a": g[:6], "b": g[6:]}, 0.5))
            for g in schedule]
    want = [None if t < window else max(masks.mask_distance(flat[t - 1], flat[s])
                                        for s in range(t - window, t - 1))
            for t in range(1, len(flat) + 1)]
    assert eb.distances[0.5] == want
    hits = [t for t, d in enumerate(want, 1) if d is not None and d <= threshold]
    assert eb.found_epochs[0.5] == (hits[0] if hits else None)
    assert eb.found_epochs[0.5] is None or eb.found_epochs[0.5] >= window


def test_stop_training_waits_for_every_ratio(model):
    # ratio 0.5 is stable from epoch 1; ratio 0.2 (2 pruned, channels 0, 1) moves until 3.
    schedule = [_swap(BASE, 0, 2), _swap(BASE, 1, 3), BASE, BASE, BASE, BASE]
    eb = _callback(model, ratios=(0.2, 0.5), threshold=0.1, window=2)
    _drive(eb, model, schedule)
    assert eb.found_epochs == {0.2: 4, 0.5: 2} and model.stop_training
    assert eb.epochs == [1, 2, 3, 4]
    model.stop_training = False
    eb = _callback(model, ratios=(0.2, 0.5), threshold=0.1, window=2, stop_training=False)
    _drive(eb, model, schedule)
    assert not model.stop_training and eb.epochs == list(range(1, 7))


def test_state_round_trips_through_json_and_resumes_the_window(model):
    schedule = [_swap(BASE, 4, 5), _swap(BASE, 3, 6), BASE, BASE, BASE, BASE, BASE]
    full = _callback(model, ratios=(0.5, 0.3), window=3, stop_training=False, save_epochs=[2])
    _drive(full, model, schedule)
    first = _callback(model, ratios=(0.5, 0.3), window=3, stop_training=False, save_epochs=[2])
    _drive(first, model, schedule[:4])
    state = json.loads(json.dumps(first.get_state()))
    resumed = eb_tf.EarlyBird(ratios=(0.5, 0.3), window=3, stop_training=False,
                              save_epochs=[2])
    resumed.set_state(state)
    resumed.set_model(model)
    resumed.on_train_begin()  # keeps the restored state
    _drive(resumed, model, schedule[4:], start=4)
    assert resumed.get_state() == full.get_state()
    assert resumed.found_epochs == full.found_epochs == {0.5: 5, 0.3: 3}
    assert resumed.distances == full.distances
    assert resumed.epoch_masks[2][0.5]["a"].tolist() == [False] * 3 + [True, False, True]
    resumed.on_train_begin()  # a new fit: reset
    assert resumed.found_epochs == {0.5: None, 0.3: None} and resumed.epochs == []


def test_reuse_after_on_train_begin_starts_over(model):
    eb = _callback(model, ratios=(0.5,), window=2)
    _drive(eb, model, [BASE] * 3)
    assert eb.found_epochs[0.5] == 2 and model.stop_training
    model.stop_training = False
    eb.on_train_begin()
    assert eb.found_epochs == {0.5: None} and eb.tickets == {} and eb.distances == {0.5: []}
    _drive(eb, model, [_swap(BASE, 0, 9), BASE, BASE])
    assert eb.found_epochs[0.5] == 3 and eb.distances[0.5] == [None, 0.2, 0.0]


def test_set_state_rejects_other_settings(model):
    eb = _callback(model, ratios=(0.5,), window=3)
    with pytest.raises(ValueError, match=r"other settings .*'window': \(3, 4\)"):
        eb_tf.EarlyBird(ratios=(0.5,), window=4).set_state(eb.get_state())
    with pytest.raises(ValueError, match=r"with version 1, got None"):
        eb.set_state({"config": {}})


def test_save_dir_holds_mask_weights_and_meta_of_the_ticket_epoch(model, tmp_path):
    eb = _callback(model, ratios=(0.5,), threshold=0.2, window=2, stop_training=False,
                   save_dir=tmp_path, save_epochs=(1,))
    _drive(eb, model, [_swap(BASE, 0, 9), BASE])
    kernel_at_t = model.get_layer("d1").kernel.numpy()
    _drive(eb, model, [BASE], start=2)
    model.get_layer("d1").kernel.assign(kernel_at_t + 1.0)  # later epochs change weights
    _drive(eb, model, [BASE], start=3)
    folder = tmp_path / "p0.5"
    assert sorted(os.listdir(folder)) == ["mask.npz", "meta.json", "weights.h5"]
    with np.load(folder / "mask.npz") as saved:
        assert sorted(saved.files) == ["a", "b"]
        for key in ("a", "b"):
            np.testing.assert_array_equal(saved[key], eb.tickets[0.5][key])
            assert saved[key].dtype == np.bool_
    fresh = _model()
    fresh.load_weights(str(folder / "weights.h5"))
    np.testing.assert_array_equal(fresh.get_layer("d1").kernel.numpy(), kernel_at_t)
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["ratio"], meta["epoch"], meta["ticket"]) == (0.5, 2, True)
    assert (meta["num_channels"], meta["num_kept"], meta["distance"]) == (10, 5, 0.2)
    assert sorted(os.listdir(tmp_path)) == ["epoch1", "p0.5"]
    assert json.loads((tmp_path / "epoch1" / "p0.5" / "meta.json").read_text())["epoch"] == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp")]


@pytest.mark.parametrize("kwargs, message", [
    ({"ratios": (0.5, 1.0)}, r"ratios entry must be in \(0, 1\).*got 1.0"),
    ({"ratios": (0.0,)}, r"ratios entry must be in \(0, 1\).*got 0.0"),
    ({"ratios": (0.5, 0.5)}, r"distinct values in \(0, 1\)"),
    ({"threshold": 0}, r"threshold must be in \(0, 1\].*got 0"),
    ({"threshold": 1.5}, r"threshold must be in \(0, 1\].*got 1.5"),
    ({"window": 1}, r"window must be an int >= 2 .*got 1"),
    ({"scope": "all"}, r"scope must be one of \('global', 'layer'\), got 'all'"),
    ({"min_channels": -2}, r"min_channels must be an int >= 0, got -2"),
    ({"save_epochs": (0,)}, r"save_epochs entries must be epochs >= 1 .*got 0"),
])
def test_bad_arguments_name_value_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        eb_tf.EarlyBird(**kwargs)


def test_model_without_trainable_bn_and_nan_gammas_are_rejected(model):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    eb = eb_tf.EarlyBird()
    eb.set_model(plain)
    with pytest.raises(ValueError, match=r"'plain' has no BatchNormalization layer"):
        eb.on_train_begin()
    eb = _callback(model)
    _set(model, np.where(np.arange(10) == 3, np.nan, BASE).astype(np.float32))
    with pytest.raises(ValueError, match=r"BN layer 'a' has non-finite gammas"):
        eb.on_epoch_end(0, {})
    _set(model, BASE)
    eb = eb_tf.EarlyBird(exclude=["nope"])
    eb.set_model(model)
    with pytest.raises(ValueError, match=r"exclude entry 'nope' matches no BN layer"):
        eb.on_train_begin()


def test_non_keras_model_is_rejected_at_train_begin():
    eb = eb_tf.EarlyBird()
    eb.set_model("not a model")
    with pytest.raises(ValueError, match=r"EarlyBird expects a Keras model"):
        eb.on_train_begin()


def test_callback_has_no_batch_hooks():
    eb = eb_tf.EarlyBird()
    assert not eb._implements_train_batch_hooks()
    assert not eb._implements_test_batch_hooks() and not eb._implements_predict_batch_hooks()


def test_fit_under_tf_distribute_logs_the_distance_into_history():
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _model()
        model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    eb = eb_tf.EarlyBird(ratios=(0.5,), window=2, threshold=1.0)
    hist = model.fit(x, np.zeros((16, 4), np.float32), epochs=4, batch_size=8, verbose=0,
                     callbacks=[eb])
    assert eb.found_epochs == {0.5: 2}
    assert len(hist.history["eb_distance_p0.5"]) == 2
    assert math.isnan(hist.history["eb_distance_p0.5"][0])


def _digits_net(width=16):
    inp = keras.Input((8, 8, 1))
    h = inp
    for i, filters in enumerate([width, 2 * width, 2 * width]):
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(gamma_initializer=keras.initializers.Constant(0.5))(h)
        h = keras.layers.ReLU()(h)
        if i < 2:
            h = keras.layers.MaxPool2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(10)(h))


def test_real_run_on_digits_finds_a_nontrivial_ticket():
    from sklearn.datasets import load_digits
    digits = load_digits()  # real 8x8 handwritten digits, shipped with scikit-learn
    x = (digits.images[..., None] / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    model = eb_tf.add_bn_l1(_digits_net(), strength=1e-4)
    initial = eb_tf.channel_masks(model, 0.5)  # all gammas 0.5: ties by layer order
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    eb = eb_tf.EarlyBird(ratios=(0.5,))  # defaults: threshold 0.1, window 5
    epochs = 30
    hist = model.fit(x, y, batch_size=64, epochs=epochs, callbacks=[eb], verbose=0)
    t = eb.found_epochs[0.5]
    assert t is not None and 5 <= t < epochs
    assert len(hist.history["loss"]) == t  # dense training stopped at the ticket
    assert hist.history["accuracy"][-1] > 0.9
    ticket = eb.tickets[0.5]
    assert sum(int((~m).sum()) for m in ticket.values()) == 40  # floor(0.5 * 80)
    assert masks.mask_distance(ticket, initial) > 0.1
    assert sum(bool(m.any() and not m.all()) for m in ticket.values()) >= 2
    assert eb.distances[0.5][t - 1] <= 0.1
