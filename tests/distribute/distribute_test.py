"""Tests of eb_tf.distribute, eb_tf.distribute.cluster, eb_tf.distribute.sync_bn and eb_tf.pipeline.distributed.

In-process tests cover strategy names, chief detection, write folders, batch/LR rules
and the BN conversion. The strategy runs need TensorFlow split into 2 logical CPUs (or
a TF_CONFIG cluster) before it initialises, so they run `tests/distribute/distribute_script.py`
in subprocesses, with timeouts.
"""
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eb_tf
from eb_tf import distribute
from eb_tf.compat import keras, tf
from eb_tf.distribute import strategy as strategy_lib
from eb_tf.distribute import sync_bn
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "distribute", "distribute_script.py")


class _Replicas:
    """A stand-in strategy with `n` replicas in sync (only what the code under test reads)."""

    def __init__(self, n):
        self.num_replicas_in_sync = n
        self.cluster_resolver = None


# ------------------------------------------------------------------ strategies
def test_get_strategy_default_is_the_current_strategy():
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert distribute.get_strategy() is tf.distribute.get_strategy()


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="horovod"), "strategy must be one of ('default', 'mirrored', 'multi_worker', "
                           "'tpu'), got 'horovod'"),
    (dict(name="default", devices=["/cpu:0"]), "applies to strategy 'mirrored' only"),
    (dict(name="mirrored", tpu="local"), "tpu='local' applies to strategy 'tpu' only"),
])
def test_get_strategy_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        distribute.get_strategy(**kwargs)


def test_tpu_path_connects_initialises_then_builds_the_strategy(monkeypatch):
    calls = []
    monkeypatch.setattr(strategy_lib, "_CREATED", {})  # the fake must not stay cached

    class Resolver:
        def __init__(self, tpu=None):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda r: calls.append(("connect", type(r).__name__)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda r: calls.append(("initialize", type(r).__name__)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy",
                        lambda r: calls.append(("strategy", type(r).__name__)) or "tpu!")
    assert distribute.get_strategy("tpu", tpu="local") == "tpu!"
    assert calls == [("resolver", "local"), ("connect", "Resolver"),
                     ("initialize", "Resolver"), ("strategy", "Resolver")]


def test_multi_worker_after_the_first_tf_op_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(strategy_lib, "_CREATED", {})
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 0))
    assert float(tf.constant(1.0) + 1.0) == 2.0  # TensorFlow has initialised
    with pytest.raises(ValueError, match=r"strategy 'multi_worker' must be created before any "
                                         r"other TensorFlow op \(Collective ops must be "
                                         r"configured at program startup\)"):
        distribute.get_strategy("multi_worker")


# ------------------------------------------------------------------ chief
def _cluster(task_type, index, chief=False):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("task_type, index, has_chief, expected, workers", [
    ("worker", 0, False, True, 2),
    ("worker", 1, False, False, 2),
    ("chief", 0, True, True, 3),
    ("worker", 0, True, False, 3),
    ("evaluator", 0, False, False, 2),
])
def test_task_info_follows_tf_config(monkeypatch, task_type, index, has_chief, expected,
                                     workers):
    monkeypatch.setenv("TF_CONFIG", _cluster(task_type, index, has_chief))
    info = distribute.task_info()
    assert (info.task_type, info.task_id, info.num_workers) == (task_type, index, workers)
    assert info.is_chief is expected and distribute.is_chief() is expected


def test_no_cluster_and_single_process_strategies_are_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.task_info() == distribute.TaskInfo(None, 0, 1, True)
    # A stray TF_CONFIG does not make a MirroredStrategy/default process a non-chief.
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 1))
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert not distribute.is_chief()


def test_bad_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster: oops")
    with pytest.raises(ValueError, match="TF_CONFIG environment variable is not valid JSON"):
        distribute.is_chief()


# ------------------------------------------------------------------ write folders
def test_write_dir_is_the_path_on_the_chief_and_a_temp_folder_elsewhere(monkeypatch,
                                                                        tmp_path):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # = $TMPDIR
    run = str(tmp_path / "run")
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 0))
    assert distribute.write_dir(run) == run
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 1))
    temp = distribute.write_dir(run)
    assert temp.startswith(str(tmp_path / "tmp" / "eb_tf_worker1_"))
    assert os.path.basename(temp) == "run" and temp == distribute.write_dir(run)
    os.makedirs(temp)
    distribute.remove_write_dir(run)
    assert not os.path.exists(os.path.dirname(temp))


def test_worker_dir_copies_the_chiefs_folder_and_always_deletes_the_copy(monkeypatch,
                                                                         tmp_path):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # = $TMPDIR
    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "search" / "state.json").write_text('{"epoch": 3}')
    (run / ".tmp-staging").mkdir()
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 1))
    with pytest.raises(RuntimeError, match="boom"):
        with distribute.worker_dir(str(run)) as folder:
            assert folder != str(run)
            assert open(os.path.join(folder, "search", "state.json")).read() == '{"epoch": 3}'
            assert not os.path.exists(os.path.join(folder, ".tmp-staging"))
            with open(os.path.join(folder, "report.json"), "w") as f:
                f.write("{}")
            raise RuntimeError("boom")
    assert not os.path.exists(folder)
    assert sorted(os.listdir(run)) == [".tmp-staging", "search"]  # the chief's: untouched
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 0))
    with distribute.worker_dir(str(run)) as folder:
        assert folder == str(run)
    assert os.path.isdir(run)


# ------------------------------------------------------------------ batch and lr
def test_per_replica_batch_splits_the_global_batch():
    assert distribute.per_replica_batch(256) == 256
    assert distribute.per_replica_batch(256, _Replicas(8)) == 32
    with pytest.raises(ValueError, match=r"batch_size=33 is the GLOBAL batch; it must be a "
                                         r"positive multiple of the 2 replicas"):
        distribute.per_replica_batch(33, _Replicas(2))
    with pytest.raises(ValueError, match="batch_size=0"):
        distribute.per_replica_batch(0)


@given(st.floats(1e-4, 1.0), st.integers(1, 8192))
def test_linear_lr_scaling_is_proportional_to_the_global_batch(lr, batch):
    assert distribute.scaled_lr(lr, batch, "none") == lr
    assert distribute.scaled_lr(lr, batch, "linear") == pytest.approx(lr * batch / 256)


def test_scaled_lr_examples_and_errors():
    assert distribute.scaled_lr(0.1, 1024, "linear") == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"lr_scaling must be one of \('none', 'linear'\), "
                                         "got 'sqrt'"):
        distribute.scaled_lr(0.1, 1024, "sqrt")


def test_shard_by_data_sets_the_data_policy():
    ds = distribute.shard_by_data(tf.data.Dataset.range(4))
    assert ds.options().experimental_distribute.auto_shard_policy == \
        tf.data.experimental.AutoShardPolicy.DATA
    assert list(ds.as_numpy_iterator()) == [0, 1, 2, 3]
    assert distribute.shard_by_data(None) is None


# ------------------------------------------------------------------ sync BN
def _bn_net():
    inner_in = keras.Input((4, 4, 3))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="bn_in")(inner_in),
                        name="inner")
    x = keras.Input((4, 4, 3))
    y = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(x)
    y = keras.layers.BatchNormalization(name="bn1", gamma_initializer="random_uniform",
                                        moving_mean_initializer="random_uniform")(y)
    y = inner(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(2, name="fc")(y))


def _bn_types(model):
    return {r.key: type(r.layer).__name__ for r in eb_tf.bn_layers(model)}


def test_sync_batchnorm_converts_every_bn_and_keeps_weights_and_outputs():
    model = eb_tf.add_bn_l1(_bn_net(), 1e-4)
    synced = eb_tf.sync_batchnorm(model)
    assert _bn_types(synced) == {"bn1": "SyncBatchNormalization",
                                 "inner/bn_in": "SyncBatchNormalization"}
    assert all(sync_bn.is_synchronized(r.layer) for r in eb_tf.bn_layers(synced))
    for a, b in zip(model.get_weights(), synced.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert synced.get_layer("bn1").gamma_regularizer.l1 == pytest.approx(1e-4)
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype(np.float32)
    # Inference: the same moving statistics (unfused kernel: float rounding only);
    # training: the same batch statistics, computed as E[x^2] - E[x]^2.
    for training in (False, True):
        np.testing.assert_allclose(model(x, training=training), synced(x, training=training),
                                   rtol=1e-4, atol=1e-7)
    assert eb_tf.sync_batchnorm(synced) is synced  # nothing left to convert


def test_sync_survives_clones_and_saving_where_the_flag_would_not(tmp_path):
    flag = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(
        synchronized=True, name="bn")])
    assert not keras.models.clone_model(flag).get_layer("bn").synchronized  # Keras drops it
    synced = eb_tf.sync_batchnorm(_bn_net())
    cloned = eb_tf.add_weight_decay(eb_tf.add_bn_l1(synced, 1e-4), 1e-4)
    path = str(tmp_path / "m.keras")
    cloned.save(path)
    loaded = keras.models.load_model(path, compile=False)
    for m in (cloned, loaded):
        assert set(_bn_types(m).values()) == {"SyncBatchNormalization"}
        assert all(r.layer.synchronized for r in eb_tf.bn_layers(m))


def test_sync_batchnorm_errors():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(x)

    sub = Sub()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="is a subclassed model"):
        eb_tf.sync_batchnorm(sub)
    with pytest.raises(ValueError, match="eb_tf.sync_batchnorm expects a Keras model"):
        eb_tf.sync_batchnorm("model")


# ------------------------------------------------------------------ config and pipeline
def test_config_fields_validate_and_strategy_does_not_change_the_hash():
    assert eb_config.STRATEGIES == distribute.STRATEGIES
    assert eb_config.LR_SCALINGS == distribute.LR_SCALINGS
    base = eb_config.from_config_dict({})
    assert (base.strategy, base.sync_bn, base.lr_scaling) == ("default", False, "none")
    h = eb_config.config_hash(base)
    assert eb_config.config_hash(dataclasses.replace(base, strategy="mirrored")) == h
    assert eb_config.config_hash(dataclasses.replace(base, sync_bn=True)) != h
    for field, value, message in (
            ("strategy", "gpu", "config.strategy='gpu' is invalid: must be one of 'default'"),
            ("lr_scaling", "sqrt", "config.lr_scaling='sqrt' is invalid"),
            ("sync_bn", 1, "config.sync_bn=1 is invalid: must be True or False")):
        with pytest.raises(ValueError, match=message):
            eb_config.from_config_dict({field: value})


def test_pipeline_scales_lr_and_checks_the_global_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    cfg = eb_config.from_config_dict({"batch_size": 512, "lr_scaling": "linear"})
    with distributed.pipeline(cfg, str(tmp_path)) as dist:
        assert dist.workdir == str(tmp_path) and dist.task.is_chief
        assert dist.cfg.lr == pytest.approx(0.2) and cfg.lr == 0.1
        assert dist.describe() == {
            "strategy": "default", "class": "_DefaultDistributionStrategy",
            "num_replicas": 1, "num_workers": 1, "global_batch": 512,
            "per_replica_batch": 512, "sync_bn": False, "lr_scaling": "linear",
            "lr": pytest.approx(0.2)}
        splits = object()
        assert dist.splits(splits) is splits
    odd = eb_config.from_config_dict({"batch_size": 33, "strategy": "mirrored"})
    with pytest.raises(ValueError, match=r"config.batch_size=33 is the GLOBAL batch; .*2 "
                                         r"replicas.*\(config.strategy='mirrored'\)"):
        with distributed.pipeline(odd, str(tmp_path), strategy=_Replicas(2)):
            pass


def test_multi_worker_splits_shard_by_data():
    class Splits:
        steps_per_epoch = 3

        def train_epochs(self, start, end):
            return tf.data.Dataset.range(start, end)

    dist = distributed.DistributedRun(None, None, "/x", distribute.TaskInfo(
        "worker", 1, 2, False))
    sharded = dist.splits(Splits())
    assert sharded.steps_per_epoch == 3
    ds = sharded.train_epochs(0, 2)
    assert ds.options().experimental_distribute.auto_shard_policy == \
        tf.data.experimental.AutoShardPolicy.DATA


# ------------------------------------------------------------------ subprocess runs
def _run_script(mode, workdir, timeout, env=None):
    proc = subprocess.run([sys.executable, SCRIPT, mode, str(workdir)], cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    return _result(proc.returncode, proc.stdout, proc.stderr)


def _result(returncode, stdout, stderr):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    assert returncode == 0 and lines, f"rc={returncode}\n{stdout[-3000:]}\n{stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("keras_version", [2, 3])
def test_mirrored_sync_bn_finds_the_same_ticket_as_one_device(tmp_path, keras_version):
    out = _run_script("compare", tmp_path, timeout=600,
                      env={"EB_TF_TEST_KERAS_VERSION": str(keras_version)})
    one, two = out["default"], out["mirrored"]
    assert two["distribute"]["num_replicas"] == 2 and two["distribute"]["sync_bn"]
    assert two["distribute"]["per_replica_batch"] == 16
    assert one["distribute"]["num_replicas"] == 1
    assert one["found"] and one["epoch"] == 3 and one["distances"][0] is None
    assert (two["found"], two["epoch"]) == (one["found"], one["epoch"])
    assert two["distances"] == one["distances"]
    assert two["mask"] == one["mask"] and 0 < sum(map(sum, one["mask"].values()))
    assert two["epoch_masks"] == one["epoch_masks"]  # every epoch, not just the ticket


@pytest.mark.slow
def test_a_drawn_ticket_retrains_and_resumes_under_mirrored_strategy(tmp_path):
    out = _run_script("retrain", tmp_path, timeout=600)
    one, two = out["default"], out["mirrored"]
    assert two["distribute"]["num_replicas"] == 2
    assert out["ticket"]["params"] < out["ticket"]["dense_params"]
    assert out["ticket"]["retrain_start_epoch"] == 2
    assert two["killed_at"] == 3  # resumed from epoch 3 under the strategy
    assert len(two["losses"]) == len(one["losses"]) == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    assert two["final"]["test"] == pytest.approx(one["final"]["test"], abs=0.01)
    assert out["to_strategy"] == {"in_scope": True, "same_weights": True,
                                  "sync_bn": ["SyncBatchNormalization"]}


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_search_reaches_the_ticket_and_only_the_chief_writes(tmp_path):
    workdir = tmp_path / "run"
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs, temps = [], []
    for index in range(2):
        temps.append(tmp_path / f"tmp{index}")
        temps[-1].mkdir()
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, SCRIPT, "worker", str(workdir)], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config),
                 "TMPDIR": str(temps[-1])}))
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    chief, other = (_result(p.returncode, *o) for p, o in zip(procs, outputs))
    assert chief["chief"] and not other["chief"]
    assert chief["distribute"]["num_workers"] == 2 and chief["distribute"]["num_replicas"] == 2
    assert chief["found"] and chief["epoch"] == 3
    assert (other["found"], other["epoch"], other["distances"]) == \
        (chief["found"], chief["epoch"], chief["distances"])  # the same stop decision
    assert chief["write_dir"] == str(workdir)
    assert other["write_dir"].startswith(str(temps[1])) and not other["write_dir_exists_after"]
    assert os.listdir(temps[1]) == [] and os.listdir(temps[0]) == []
    for name in ("config.json", "report.json", "search/eb/p0.5/mask.npz",
                 "search/eb/p0.5/weights.h5", "search/ckpt/state.json", "search/final.keras"):
        assert (workdir / name).is_file(), name
    leftovers = [p for p in workdir.rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    assert not leftovers
    with open(workdir / "report.json", encoding="utf-8") as f:
        assert json.load(f)["eb"]["0.5"]["epoch"] == 3
