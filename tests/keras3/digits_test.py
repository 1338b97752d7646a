"""The whole Early-Bird path with a Keras 3 model on the embedded digits (real data).

EarlyBird in `model.fit` finds the ticket, `prune` draws it exactly and smaller, the
ticket retrains with `model.fit`, saves as `.keras`, reloads, and its float32 TFLite
matches Keras to 1e-4.
"""
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras3
from eb_tf.export.litert import LiteRTModel

L = keras3.layers


def _convnet(input_shape, num_classes):
    inp = x = keras3.Input(input_shape)
    for i, f in enumerate((16, 16, "M", 32, 32)):
        if f == "M":
            x = L.MaxPooling2D(2, name=f"pool{i}")(x)
            continue
        x = L.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.ReLU(name=f"relu{i}")(L.BatchNormalization(
            momentum=0.9, epsilon=1e-5, gamma_initializer=keras3.initializers.Constant(0.5),
            name=f"bn{i}")(x))
    x = L.Dense(num_classes, name="fc")(L.GlobalAveragePooling2D(name="avgpool")(x))
    return keras3.Model(inp, x, name="k3convnet")


@pytest.fixture(scope="module")
def splits():
    return eb_tf.data.load("digits", batch_size=64, validation_fraction=0.0, augment=False)


def test_keras3_early_bird_prune_retrain_save_reload_and_tflite(splits, tmp_path):
    keras3.utils.set_random_seed(0)
    model = eb_tf.add_weight_decay(eb_tf.add_bn_l1(
        _convnet(splits.input_shape, splits.num_classes), strength=1e-4), weight_decay=1e-4)
    loss = keras3.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras3.optimizers.SGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
    eb = eb_tf.EarlyBird(ratios=(0.5,), threshold=0.1, window=3, save_dir=str(tmp_path / "eb"))
    history = model.fit(splits.train_epochs(0, 15), epochs=15,
                        steps_per_epoch=splits.steps_per_epoch, callbacks=[eb], verbose=0)
    t = eb.found_epochs[0.5]
    assert t is not None and len(history.history["loss"]) == t < 15      # stopped at t
    assert np.isnan(history.history["eb_distance_p0.5"][0])
    assert history.history["eb_distance_p0.5"][-1] <= 0.1
    assert (tmp_path / "eb" / "p0.5" / "weights.weights.h5").exists()

    masks = eb.tickets[0.5]
    assert sum(int(m.sum()) for m in masks.values()) == 48        # half of 96 channels
    ticket = eb_tf.prune(model, masks)
    x_test, y_test = map(np.concatenate, zip(*[(x.numpy(), y.numpy()) for x, y in splits.test()]))
    masked = eb_tf.apply_masks(model, masks)
    ref = np.asarray(masked(x_test[:64], training=False))
    got = np.asarray(ticket(x_test[:64], training=False))
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-4
    assert eb_tf.count_flops(ticket).total < 0.6 * eb_tf.count_flops(model).total
    assert ticket.count_params() < model.count_params()

    ticket.compile(keras3.optimizers.SGD(0.05, momentum=0.9), loss, metrics=["accuracy"])
    ticket.fit(splits.train_epochs(t, t + 3), initial_epoch=t, epochs=t + 3,
               steps_per_epoch=splits.steps_per_epoch, verbose=0)
    accuracy = eb_tf.evaluate_accuracy(ticket, splits.test())
    assert accuracy > 0.8, accuracy

    path = str(tmp_path / "ticket.keras")
    eb_tf.io_utils.atomic_save_model(ticket, path)
    loaded = keras3.models.load_model(path)
    out = np.asarray(loaded(x_test, training=False))
    np.testing.assert_allclose(out, np.asarray(ticket(x_test, training=False)), atol=1e-6)
    info = eb_tf.export_tflite(loaded, str(tmp_path / "ticket.tflite"))
    lite = LiteRTModel(info.path)(x_test)
    assert np.abs(lite - out).max() / np.abs(out).max() <= 1e-4
    assert eb_tf.evaluate_accuracy(info.path, splits.test()) == pytest.approx(accuracy, abs=0.01)
