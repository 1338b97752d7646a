"""Tests for eb_tf.io_utils: atomic writes leave complete files or none."""
import os

import numpy as np
import pytest

from eb_tf import io_utils
from eb_tf.compat import keras


def test_json_round_trip_with_numpy_values(tmp_path):
    path = str(tmp_path / "a" / "r.json")
    io_utils.atomic_write_json(path, {"x": np.float32(0.5), "m": np.array([1, 0])})
    assert io_utils.read_json(path) == {"x": 0.5, "m": [1, 0]}
    assert os.listdir(tmp_path / "a") == ["r.json"]


def test_failed_writer_leaves_no_file(tmp_path):
    path = str(tmp_path / "r.json")
    with pytest.raises(TypeError, match="not JSON serialisable"):
        io_utils.atomic_write_json(path, {"bad": object()})
    assert os.listdir(tmp_path) == []


def test_corrupt_json_names_the_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"r.json' is not valid JSON"):
        io_utils.read_json(str(path))


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = str(tmp_path / "t")
    with io_utils.atomic_dir(target) as d:
        open(os.path.join(d, "old.txt"), "w").close()
    with pytest.raises(RuntimeError):
        with io_utils.atomic_dir(target) as d:
            open(os.path.join(d, "new.txt"), "w").close()
            raise RuntimeError("writer died")
    assert os.listdir(target) == ["old.txt"]
    with io_utils.atomic_dir(target) as d:
        open(os.path.join(d, "new.txt"), "w").close()
    assert os.listdir(target) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["t"]


def test_atomic_save_model_round_trip(tmp_path):
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    path = io_utils.atomic_save_model(model, str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    assert os.listdir(tmp_path) == ["m.keras"]
    with pytest.raises(ValueError, match="must end in .h5"):
        io_utils.atomic_save_weights(model, str(tmp_path / "w.ckpt"))
