"""Tests of eb_tf.data.cache: the cache folder, the shared data folder, the CIFAR-10 decode,
and the configs that read the decoded CIFAR-10 from the cache."""
import os

import numpy as np
import pytest

from eb_tf.data import cache

# Stands in for ../shared/data/cifar10_npz.py: counts its runs, writes a tiny npz to argv[1].
_FAKE_DECODER = """import sys
import numpy as np
with open(sys.argv[1] + ".runs", "a") as f:
    f.write("x")
np.savez(sys.argv[1], x_train=np.zeros((4, 2, 2, 3), np.uint8), y_train=np.arange(4) % 2,
         x_test=np.zeros((2, 2, 2, 3), np.uint8), y_test=np.arange(2))
"""


@pytest.fixture(name="env")
def _env(monkeypatch, tmp_path):
    """A fake HOME, no EB_TF_* overrides; returns monkeypatch."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv(cache.SHARED_DATA_ENV, raising=False)
    return monkeypatch


def _shared(folder, with_data=True):
    folder.mkdir(parents=True)
    (folder / "cifar10_npz.py").write_text(_FAKE_DECODER)
    if with_data:
        (folder / "cifar10-jpeg.npz").write_bytes(b"stand-in")
    return folder


def test_cache_dir_defaults_to_home_cache_and_env_overrides_it(env, tmp_path):
    home_cache = str(tmp_path / "home" / ".cache" / "eb_tf")
    assert cache.cache_dir() == home_cache
    assert cache.cache_path("cifar10.npz") == os.path.join(home_cache, "cifar10.npz")
    env.setenv(cache.CACHE_ENV, "")                       # empty: the default
    assert cache.cache_dir() == home_cache
    env.setenv(cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache.cache_path("a.npz") == str(tmp_path / "elsewhere" / "a.npz")
    env.setenv(cache.CACHE_ENV, "~/mine")
    assert cache.cache_dir() == str(tmp_path / "home" / "mine")
    env.chdir(tmp_path)
    env.setenv(cache.CACHE_ENV, "rel")                    # relative: made absolute
    assert cache.cache_dir() == str(tmp_path / "rel")
    assert not os.path.exists(home_cache)                 # naming a folder creates nothing


def test_shared_data_dir_is_relative_to_the_project_root_or_the_env(env, tmp_path):
    assert os.path.isfile(os.path.join(cache.PROJECT_ROOT, "eb_tf", "data", "cache.py"))
    assert cache.shared_data_dir() == os.path.abspath(
        os.path.join(cache.PROJECT_ROOT, "..", "shared", "data"))
    assert cache.shared_data_dir(str(tmp_path / "proj")) == str(tmp_path / "shared" / "data")
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "data"))
    assert cache.shared_data_dir() == cache.shared_data_dir("/ignored") == str(tmp_path / "data")
    assert cache.shared_cifar10_script() == ""            # no such folder
    _shared(tmp_path / "data", with_data=False)
    assert cache.shared_cifar10_script() == ""            # the decoder without its data
    (tmp_path / "data" / "cifar10-jpeg.npz").write_bytes(b"stand-in")
    assert cache.shared_cifar10_script() == str(tmp_path / "data" / "cifar10_npz.py")


def test_prepare_cifar10_decodes_once_into_the_cache(env, tmp_path, capsys):
    _shared(tmp_path / "data")
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "data"))
    target = tmp_path / "home" / ".cache" / "eb_tf" / "cifar10.npz"
    assert cache.prepare_cifar10() == str(target)         # creates the cache folder
    assert cache.prepare_cifar10() == str(target)         # found: not decoded again
    assert (tmp_path / "home" / ".cache" / "eb_tf" / "cifar10.npz.runs").read_text() == "x"
    assert cache.main(["cifar10"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert cache.prepare_cifar10(str(tmp_path / "own" / "c.npz")) == str(tmp_path / "own/c.npz")
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "nowhere"))
    assert cache.prepare_cifar10() == str(target)         # present: needs no shared data
    with pytest.raises(FileNotFoundError, match=r"has no cifar10-jpeg.npz \(set \$EB_TF_SHARED"):
        cache.prepare_cifar10(str(tmp_path / "missing.npz"))


def test_main_prints_the_folders_and_rejects_other_arguments(env, tmp_path, capsys):
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "nowhere"))
    assert cache.main([]) == 0
    out = capsys.readouterr().out
    assert f"(${cache.CACHE_ENV}): {tmp_path / 'home' / '.cache' / 'eb_tf'}" in out
    assert f"(${cache.SHARED_DATA_ENV}): {tmp_path / 'nowhere'}" in out
    assert cache.main(["cifar10"]) == 1
    assert "has no cifar10-jpeg.npz" in capsys.readouterr().err
    assert cache.main(["mnist"]) == 2


def test_npz_and_dir_paths_may_start_with_a_tilde(env, tmp_path):
    import eb_tf  # pylint: disable=import-outside-toplevel
    (tmp_path / "home").mkdir()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "home" / "tiny.npz", x_train=rng.integers(0, 256, (6, 4, 4, 3), np.uint8),
             y_train=np.arange(6) % 2, x_test=np.zeros((2, 4, 4, 3), np.uint8),
             y_test=np.arange(2))
    splits = eb_tf.data.load("npz:~/tiny.npz", batch_size=2, validation_fraction=0.0)
    assert splits.input_shape == (4, 4, 3) and splits.name == "npz:~/tiny.npz"
    with pytest.raises(ValueError, match=r"npz:~/gone.npz: no such file.*python -m "
                                         r"eb_tf.data.cache cifar10` decodes into "):
        eb_tf.data.load("npz:~/gone.npz")
    with pytest.raises(ValueError, match="dir:~/gone: no such directory"):
        eb_tf.data.load("dir:~/gone")


def test_cifar10_configs_read_the_cache(env, tmp_path):
    from configs import cifar10_small, tune_cifar10_small  # pylint: disable=import-outside-toplevel
    env.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    expected = f"npz:{tmp_path / 'c' / 'cifar10.npz'}"
    assert cifar10_small.get_config().dataset == expected
    assert cifar10_small.get_config("smoke").dataset == expected
    assert tune_cifar10_small.get_config().dataset == expected
    for module, binary in ((cifar10_small, "eb_train"), (tune_cifar10_small, "eb_tune")):
        first = module.__doc__.splitlines()[0]   # no preparation step: the run decodes
        assert first.startswith(f"python -m binaries.{binary} --config=configs/"), first


def test_bench_config_decodes_the_shared_data_into_the_cache(env, tmp_path):
    from configs import bench_cifar10  # pylint: disable=import-outside-toplevel
    env.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "nowhere"))
    small = bench_cifar10.get_config("small")             # no shared data, no decoded copy
    assert (small.dataset, small.model, small.data_prepare) == ("digits", "convnet", "")
    shared = _shared(tmp_path / "data")
    env.setenv(cache.SHARED_DATA_ENV, str(shared))
    assert bench_cifar10.cifar10_npz() == str(tmp_path / "c" / "cifar10.npz")
    for profile in ("small", "full"):
        cfg = bench_cifar10.get_config(profile)
        assert cfg.dataset == f"npz:{tmp_path / 'c' / 'cifar10.npz'}"
        assert cfg.data_prepare == str(shared / "cifar10_npz.py")
    assert not (tmp_path / "c").exists()     # loading a config writes nothing (eb_bench does)
    assert bench_cifar10.get_config("smoke").dataset == "digits"


def test_reading_the_missing_cache_cifar10_decodes_it_first(env, tmp_path, capsys):
    from eb_tf.data import sources  # pylint: disable=import-outside-toplevel
    env.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "nowhere"))
    target = tmp_path / "c" / "cifar10.npz"
    with pytest.raises(ValueError, match=r"no such file.*python -m eb_tf.data.cache cifar10"):
        sources.load_npz(str(target))                     # no shared data: a clear error
    _shared(tmp_path / "data")
    env.setenv(cache.SHARED_DATA_ENV, str(tmp_path / "data"))
    with pytest.raises(ValueError, match="no such file"):  # another path is never decoded
        sources.load_npz(str(tmp_path / "other.npz"))
    source = sources.load_npz(str(target))                 # the cache's copy: decoded once
    assert len(source.y_train) == 4 and target.exists()
    assert "decoding the shared CIFAR-10" in capsys.readouterr().out
    sources.load_npz(str(target))
    assert (tmp_path / "c" / "cifar10.npz.runs").read_text() == "x"
