"""Tests of eb_tf.data: tfds (mocked), npz, dir and digits; determinism; augmentation; errors."""
import re
import subprocess
import sys
import types

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from PIL import Image

import eb_tf
from eb_tf.compat import tf
from eb_tf.data import augment, sources, tfds_source

tfds = pytest.importorskip("tensorflow_datasets")


def _npz(path, n_train=12, n_test=5, shape=(32, 32, 3), classes=3, seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = dict(x_train=rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
                  y_train=(np.arange(n_train) % classes).reshape(-1, 1).astype(np.uint8),
                  x_test=rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
                  y_test=(np.arange(n_test) % classes).astype(np.int64))
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def _pixels(splits, x):
    """Undoes the normalisation: uint8 pixels of a batch."""
    x = np.asarray(x) * np.asarray(splits.std) + np.asarray(splits.mean)
    return np.round(x * 255).astype(np.int64)


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _match_window(out, originals, pad):
    """(index, dy, dx, flipped) such that `out` is a window of a zero-padded original."""
    h, w = out.shape[:2]
    for j, orig in enumerate(originals):
        padded = np.pad(orig.astype(np.int64), [(pad, pad), (pad, pad), (0, 0)])
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                window = padded[dy:dy + h, dx:dx + w]
                for flipped, view in ((False, window), (True, window[:, ::-1])):
                    if np.array_equal(view, out):
                        return j, dy, dx, flipped
    return None


@pytest.mark.parametrize("policy", ["cifar", "shift"])
def test_augmented_images_are_padded_crops_of_the_originals(tmp_path, policy):
    arrays = _npz(tmp_path / "d.npz")
    splits = eb_tf.data.load(f"npz:{tmp_path / 'd.npz'}", batch_size=12,
                             validation_fraction=0.0, augment=policy, seed=1)
    assert splits.augment == policy
    np.testing.assert_allclose(splits.mean, arrays["x_train"].mean((0, 1, 2)) / 255, rtol=1e-6)
    np.testing.assert_allclose(splits.std, arrays["x_train"].std((0, 1, 2)) / 255, rtol=1e-5)
    (x, y), = _batches(splits.train(0))
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    matches = [_match_window(img, arrays["x_train"], pad=4) for img in _pixels(splits, x)]
    assert all(m is not None for m in matches)
    assert sorted(m[0] for m in matches) == list(range(12))          # a permutation
    assert [int(arrays["y_train"][m[0], 0]) for m in matches] == list(y)
    assert any((m[1], m[2]) != (4, 4) for m in matches)              # some are shifted
    assert any(m[3] for m in matches) == (policy == "cifar")         # flips only for cifar
    (xt, yt), = _batches(splits.test())                             # eval view: exact
    np.testing.assert_array_equal(_pixels(splits, xt), arrays["x_test"])
    np.testing.assert_array_equal(yt, arrays["y_test"])


def test_validation_split_is_carved_from_train_with_the_seed(tmp_path):
    arrays = _npz(tmp_path / "d.npz", n_train=40)
    ids = {arrays["x_train"][i].tobytes(): i for i in range(40)}

    def members(seed, subset=None):
        s = eb_tf.data.load(f"npz:{tmp_path / 'd.npz'}", batch_size=16, seed=seed,
                            validation_fraction=0.25, train_subset=subset, augment=False)
        val = {ids[p.astype(np.uint8).tobytes()] for x, _ in _batches(s.validation())
               for p in _pixels(s, x)}
        train = {ids[p.astype(np.uint8).tobytes()] for x, _ in _batches(s.train(0))
                 for p in _pixels(s, x)}
        assert (s.num_train, s.num_validation, s.num_test) == (len(train), 10, 5)
        return val, train

    val, train = members(seed=0)
    assert len(val) == 10 and not val & train and val | train == set(range(40))
    assert members(seed=0) == (val, train)
    assert members(seed=1)[0] != val
    val_sub, train_sub = members(seed=0, subset=7)
    assert val_sub == val and len(train_sub) == 7 and train_sub <= train
    assert len(members(seed=0, subset=0.5)[1]) == 15


def test_epoch_k_is_the_same_whether_or_not_earlier_epochs_ran(tmp_path):
    _npz(tmp_path / "d.npz", n_train=20)
    name = f"npz:{tmp_path / 'd.npz'}"
    first = eb_tf.data.load(name, batch_size=6, seed=3)
    for k in range(3):
        _batches(first.train(k))
    resumed = eb_tf.data.load(name, batch_size=6, seed=3)
    a = _batches(first.train(3))
    tf.random.set_seed(1234)                     # TF's global seed plays no part
    b = _batches(resumed.train(3))
    assert [x.shape[0] for x, _ in a] == [6, 6, 6] and first.steps_per_epoch == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    together = _batches(resumed.train_epochs(2, 4))
    apart = _batches(first.train(2)) + a
    assert len(together) == 6
    for (xa, _), (xb, _) in zip(together, apart):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(_batches(first.train(4))[0][0], a[0][0])
    other_seed = eb_tf.data.load(name, batch_size=6, seed=4)
    assert not np.array_equal(_batches(other_seed.train(3))[0][0], a[0][0])


@hypothesis.settings(max_examples=5)
@hypothesis.given(seed=st.integers(0, 2 ** 31 - 1), epoch=st.integers(0, 10 ** 6))
def test_first_batch_depends_only_on_seed_and_epoch(tmp_path_factory, seed, epoch):
    path = tmp_path_factory.getbasetemp() / "prop.npz"
    if not path.exists():
        _npz(path, n_train=10, shape=(8, 8, 1))
    a = eb_tf.data.load(f"npz:{path}", batch_size=4, seed=seed)
    b = eb_tf.data.load(f"npz:{path}", batch_size=4, seed=seed)
    _batches(b.train(max(epoch - 1, 0)))
    xa, ya = next(iter(a.train(epoch)))
    xb, yb = next(iter(b.train(epoch)))
    np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_tfds_cifar_under_mock_data(name, classes):
    with tfds.testing.mock_data(num_examples=20):
        splits = eb_tf.data.load(name, batch_size=8, seed=0)
        assert (splits.num_classes, splits.input_shape, splits.augment) == (classes, (32, 32, 3),
                                                                           "cifar")
        assert (splits.num_train, splits.num_validation, splits.num_test) == (18, 2, 20)
        train = _batches(splits.train(0))
        assert [x.shape for x, _ in train] == [(8, 32, 32, 3), (8, 32, 32, 3), (2, 32, 32, 3)]
        assert len(train) == splits.steps_per_epoch
        lo = -np.asarray(splits.mean) / splits.std
        hi = (1 - np.asarray(splits.mean)) / splits.std
        for x, y in train + _batches(splits.test()):
            assert x.dtype == np.float32 and y.dtype == np.int32
            assert np.all(x >= lo - 1e-5) and np.all(x <= hi + 1e-5)
            assert np.all((0 <= y) & (y < classes))
        assert [x.shape for x, _ in _batches(splits.validation())] == [(2, 32, 32, 3)]


def test_tfds_imagenet2012_under_mock_data_streams_with_inception_crops():
    with tfds.testing.mock_data(num_examples=6):
        splits = eb_tf.data.load("imagenet2012", batch_size=2, seed=0,
                                 validation_fraction=1 / 3)
        again = eb_tf.data.load("imagenet2012", batch_size=2, seed=0,
                                validation_fraction=1 / 3)
        assert (splits.input_shape, splits.num_classes, splits.augment) == ((224, 224, 3), 1000,
                                                                            "imagenet")
        assert (splits.num_train, splits.num_validation, splits.num_test) == (4, 2, 6)
        assert splits.mean == augment.IMAGENET_MEAN
        lo = -np.asarray(splits.mean) / splits.std
        hi = (1 - np.asarray(splits.mean)) / splits.std
        first = _batches(splits.train(0))
        evals = _batches(splits.validation()) + _batches(splits.test())
        for x, y in first + evals:
            assert x.shape == (2, 224, 224, 3) and x.dtype == np.float32
            assert np.all(x >= lo - 1e-4) and np.all(x <= hi + 1e-4) and y.dtype == np.int32
        epoch1 = _batches(splits.train(1))       # after epoch 0 ran; `again` skips it
        assert not np.array_equal(epoch1[0][0], first[0][0])
        tf.random.set_seed(1234)                 # TF's global seed plays no part
        for (xa, _), (xb, _) in zip(epoch1, _batches(again.train(1))):
            np.testing.assert_array_equal(xa, xb)
        small = eb_tf.data.load("imagenet2012", batch_size=3, image_size=64)
        assert next(iter(small.train(0)))[0].shape == (3, 64, 64, 3)
        with pytest.raises(ValueError, match="images vary in size"):
            eb_tf.data.load("imagenet2012", augment="cifar")


def test_streamed_split_slicing_when_tfds_knows_the_split_sizes(monkeypatch):
    """Real tfds datasets (splits known): validation = train[:n], test = 'validation'."""
    def as_dataset(split, as_supervised, shuffle_files, decoders):
        del as_supervised, shuffle_files, decoders      # images come encoded, as asked
        name, lo, hi = re.fullmatch(r"(\w+)(?:\[(\d*):(\d*)\])?", split).groups()
        total = {"train": 10, "validation": 4}[name]
        idx = range(int(lo or 0), int(hi or total))
        offset = 100 if name == "validation" else 0
        return tf.data.Dataset.from_generator(
            lambda: ((tf.io.encode_png(np.full((8 + i, 10, 3), i + offset, np.uint8)).numpy(),
                      np.int64(i % 3)) for i in idx),
            output_signature=(tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int64)))

    features = {"image": types.SimpleNamespace(shape=(None, None, 3)),
                "label": types.SimpleNamespace(num_classes=3, names=["a", "b", "c"])}
    splits_info = {"train": types.SimpleNamespace(num_examples=10),
                   "validation": types.SimpleNamespace(num_examples=4)}
    fake = types.SimpleNamespace(as_dataset=as_dataset, info=types.SimpleNamespace(
        supervised_keys=("image", "label"), features=features, splits=splits_info))
    monkeypatch.setattr(tfds_source, "_builder", lambda *a, **k: fake)
    splits = eb_tf.data.load("fake_images", batch_size=20, validation_fraction=0.2,
                             image_size=8, augment=False)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (8, 2, 4)
    assert splits.class_names == ["a", "b", "c"]

    def values(ds):
        return sorted(int(round(v)) for v in _pixels(splits, _batches(ds)[0][0])[:, 0, 0, 0])
    assert values(splits.validation()) == [0, 1]
    assert values(splits.train(0)) == list(range(2, 10))
    assert values(splits.test()) == [100, 101, 102, 103]


def test_digits_is_the_real_embedded_dataset_with_a_fixed_test_split():
    splits = eb_tf.data.load("digits", batch_size=512)
    assert (splits.input_shape, splits.num_classes, splits.augment) == ((16, 16, 1), 10, "shift")
    assert (splits.num_train, splits.num_validation, splits.num_test) == (1294, 144, 359)
    test_a = _batches(splits.test())
    test_b = _batches(eb_tf.data.load("digits", batch_size=512, seed=7).test())
    np.testing.assert_array_equal(np.concatenate([y for _, y in test_a]),
                                  np.concatenate([y for _, y in test_b]))
    pixels = _pixels(splits, np.concatenate([x for x, _ in test_a]))
    assert pixels.min() == 0 and pixels.max() == 255
    assert set(np.concatenate([y for _, y in test_a])) == set(range(10))
    big = eb_tf.data.load("digits", image_size=32, channels=3)
    assert next(iter(big.train(0)))[0].shape == (256, 32, 32, 3)


def _png(path, size=(12, 10), mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)


def test_dir_of_class_folders(tmp_path):
    for i in range(5):
        _png(tmp_path / "flat" / "dog" / f"{i}.png", value=10 * i)
        _png(tmp_path / "flat" / "cat" / f"{i}.png", value=100 + i)
        _png(tmp_path / "split" / "train" / "b" / f"{i}.png", mode="L")
        _png(tmp_path / "split" / "train" / "a" / f"{i}.png", mode="L")
    _png(tmp_path / "split" / "test" / "b" / "t.png", mode="L", value=7)
    flat = eb_tf.data.load(f"dir:{tmp_path / 'flat'}", batch_size=4, validation_fraction=0)
    assert flat.class_names == ["cat", "dog"] and flat.input_shape == (10, 12, 3)
    assert (flat.num_train, flat.num_test) == (8, 2)
    split = eb_tf.data.load(f"dir:{tmp_path / 'split'}", batch_size=4, image_size=6)
    assert split.input_shape == (6, 6, 1) and split.class_names == ["a", "b"]
    (xt, yt), = _batches(split.test())
    assert (split.num_test, list(yt)) == (1, [1])
    np.testing.assert_array_equal(_pixels(split, xt), np.full((1, 6, 6, 1), 7))
    _png(tmp_path / "flat" / "dog" / "odd.png", size=(9, 9))
    with pytest.raises(ValueError, match=r"differ in shape: .*odd\.png.*image_size"):
        eb_tf.data.load(f"dir:{tmp_path / 'flat'}")
    assert eb_tf.data.load(f"dir:{tmp_path / 'flat'}", image_size=9).input_shape == (9, 9, 3)
    (tmp_path / "flat" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        eb_tf.data.load(f"dir:{tmp_path / 'flat'}", image_size=9)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="found no images"):
        eb_tf.data.load(f"dir:{tmp_path / 'empty'}")
    _png(tmp_path / "split" / "test" / "zebra" / "z.png", mode="L")
    with pytest.raises(ValueError, match=r"classes \['zebra'\] that the train folder lacks"):
        eb_tf.data.load(f"dir:{tmp_path / 'split'}")


def test_npz_layouts_and_errors(tmp_path):
    _npz(tmp_path / "mnist.npz", shape=(8, 8))          # (N, H, W) gets a channel axis
    assert eb_tf.data.load(f"npz:{tmp_path / 'mnist.npz'}").input_shape == (8, 8, 1)
    with pytest.raises(ValueError, match="no such file"):
        eb_tf.data.load(f"npz:{tmp_path / 'missing.npz'}")
    (tmp_path / "corrupt.npz").write_bytes(b"garbage, not a zip")
    with pytest.raises(ValueError, match="cannot read it as an .npz"):
        eb_tf.data.load(f"npz:{tmp_path / 'corrupt.npz'}")
    np.savez(tmp_path / "keys.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8), labels=[0, 1])
    with pytest.raises(ValueError, match=re.escape(
            "missing keys ['y_train', 'x_test', 'y_test']; found ['labels', 'x_train']")):
        eb_tf.data.load(f"npz:{tmp_path / 'keys.npz'}")
    _npz(tmp_path / "shapes.npz", x_test=np.zeros((5, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match=r"x_train \(32, 32, 3\) vs x_test \(28, 28, 3\)"):
        eb_tf.data.load(f"npz:{tmp_path / 'shapes.npz'}")
    _npz(tmp_path / "labels.npz", y_train=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="y_train must hold 12 integer class ids"):
        eb_tf.data.load(f"npz:{tmp_path / 'labels.npz'}")


def test_npz_pixels_of_every_accepted_kind_load_as_uint8(tmp_path):
    pixels = np.arange(12 * 4 * 4, dtype=np.int64).reshape(12, 4, 4, 1) % 256
    for name, x in (("uint8", pixels.astype(np.uint8)), ("int64", pixels),
                    ("float255", pixels.astype(np.float32)),
                    ("unit", pixels.astype(np.float64) / 255.0),
                    ("rounding", np.where(pixels == 255, 255.4, pixels).astype(np.float32))):
        _npz(tmp_path / f"{name}.npz", x_train=x, x_test=x[:5], y_train=np.arange(12) % 3)
        src = sources.load_npz(str(tmp_path / f"{name}.npz"))
        assert src.x_train.dtype == np.uint8, name
        np.testing.assert_array_equal(src.x_train, pixels, err_msg=name)


@pytest.mark.parametrize("array, x, needle", [
    ("x_train", np.where(np.arange(48).reshape(3, 4, 4, 1) % 7 == 0, np.nan, 0.5),
     "x_train holds 7 NaN and 0 Inf values (of 48); pixels must be finite"),
    ("x_test", np.where(np.arange(48).reshape(3, 4, 4, 1) < 2, np.inf, 0.5),
     "x_test holds 0 NaN and 2 Inf values (of 48)"),
    ("x_train", np.linspace(-1, 1, 48).reshape(3, 4, 4, 1),
     "x_train holds 24 of 48 float values outside the pixel range [0, 1] (its maximum is "
     "<= 1): -1..1; store un-normalised pixels"),
    ("x_test", np.linspace(0, 300, 48).reshape(3, 4, 4, 1),
     "x_test holds 7 of 48 float values outside the pixel range [0, 255]: 0..300"),
    ("x_train", np.arange(-2, 46).reshape(3, 4, 4, 1),
     "x_train holds 2 of 48 integers outside 0..255 (-2..45); store uint8 pixels")])
def test_npz_nan_or_out_of_range_pixels_are_an_error_naming_file_array_and_count(
        tmp_path, array, x, needle):
    good = np.zeros((3, 4, 4, 1), np.uint8)
    arrays = {"x_train": good, "x_test": good, array: x}
    _npz(tmp_path / "bad.npz", y_train=np.arange(3), y_test=np.arange(3), **arrays)
    with pytest.raises(ValueError, match=re.escape(f"npz:{tmp_path / 'bad.npz'} {needle}")):
        eb_tf.data.load(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(name="no_such_dataset_xyz"), "Unknown dataset 'no_such_dataset_xyz'"),
    (dict(name="foo:bar"), "known kinds are"), (dict(batch_size=0), "batch_size"),
    (dict(validation_fraction=1.0), "validation_fraction must be in [0, 1)"),
    (dict(train_subset=0), "train_subset"), (dict(train_subset=5000), "exceeds the 1294"),
    (dict(augment="bogus"), "augment must be True, False or one of"),
    (dict(seed=-1), "seed must be an int >= 0"),
    (dict(test_fraction=1.0), "test_fraction must be in (0, 1)"),
    (dict(channels=2), "channels must be 1 or 3")])
def test_bad_arguments_raise_clear_value_errors(kwargs, needle):
    args = dict(name="digits")
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(needle)) as info:
        eb_tf.data.load(**args)
    if "Unknown dataset" in needle or "known kinds" in needle:
        assert "npz:PATH" in str(info.value) and "dir:PATH" in str(info.value)


def test_representative_and_steps(tmp_path):
    _npz(tmp_path / "d.npz", n_train=10, shape=(8, 8, 3))
    splits = eb_tf.data.load(f"npz:{tmp_path / 'd.npz'}", batch_size=4, validation_fraction=0,
                             drop_remainder=True)
    reps = list(splits.representative(3))
    assert len(reps) == 3 and all(len(r) == 1 and r[0].shape == (1, 8, 8, 3) and
                                  r[0].dtype == np.float32 for r in reps)
    assert splits.steps_per_epoch == 2 == len(_batches(splits.train(0)))
    assert splits.validation() is None
    with pytest.raises(ValueError, match="representative"):
        list(splits.representative(0))
    with pytest.raises(ValueError, match="initial_epoch < epochs"):
        splits.train_epochs(3, 3)


def test_import_eb_tf_does_not_import_tensorflow_datasets():
    code = "import sys, eb_tf; eb_tf.data.load; print('tensorflow_datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""})
    assert out.stdout.strip() == "False"
