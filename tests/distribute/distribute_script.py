"""Subprocess driver of tests/distribute/distribute_test.py: runs EB Train under a tf.distribute strategy.

The logical-CPU split and MultiWorkerMirroredStrategy must both happen before
TensorFlow initialises, so each scenario runs in a fresh process:

    python tests/distribute/distribute_script.py compare WORKDIR   # search: default vs mirrored
    python tests/distribute/distribute_script.py retrain WORKDIR   # a drawn ticket retrains mirrored
    TF_CONFIG=... python tests/distribute/distribute_script.py worker WORKDIR  # one MWMS worker

`compare` and `retrain` split the CPU into 2 logical devices (MirroredStrategy gets 2
replicas). The last stdout line is `RESULT <json>`. With EB_TF_TEST_KERAS_VERSION=3 the
runs are Keras 3 runs (`config.keras_version=3`).
"""
import contextlib
import json
import os
import shutil
import sys

import numpy as np

# A tiny, fast EB search on the embedded digits: the ticket emerges at epoch 3 of 4
# (mask distances None, 0.16, 0.11 with window 2).
CONFIG = dict(dataset="digits", model="convnet", width=0.5, train_subset=256,
              validation_fraction=0.1, eval_batches=1, batch_size=32, epochs=4, lr=0.05,
              ratios=(0.5,), window=2, threshold=0.12, tensorboard=False, verbose=0,
              seed=0, deterministic=True)


# The Keras of the runs: 2 (tf_keras) unless the test sets this variable to 3.
KERAS_VERSION_ENV = "EB_TF_TEST_KERAS_VERSION"


def _split_cpu(n: int) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def _search_result(report: dict, workdir: str) -> dict:
    from eb_tf.pipeline import draw as drawing  # pylint: disable=import-outside-toplevel
    from eb_tf.pipeline import trainer
    eb = report["eb"]["0.5"]
    ticket = drawing.read_mask(os.path.join(workdir, "search", "eb", "p0.5", "mask.npz"))
    every_epoch = trainer.read_mask_history(os.path.join(workdir, "search", "masks",
                                                         "p0.5.npz"))
    return {"epoch": eb["epoch"], "found": eb["found"], "distances": eb["distances"],
            "mask": {k: v.astype(int).tolist() for k, v in ticket.items()},
            "epoch_masks": every_epoch["masks"].astype(int).tolist(),
            "distribute": report["distribute"]["search"]}


def compare(workdir: str) -> dict:
    """The same search under the default strategy and mirrored over 2 CPUs (sync BN)."""
    _split_cpu(2)
    from eb_tf.pipeline import runner  # pylint: disable=import-outside-toplevel
    out = {}
    for name, extra in (("default", {}), ("mirrored", dict(strategy="mirrored",
                                                           sync_bn=True))):
        folder = os.path.join(workdir, name)
        report = runner.run(dict(CONFIG, **extra), folder, ("search",),
                               print_summary=False)
        out[name] = _search_result(report, folder)
    return out


def _retrain_losses(folder: str):
    state = os.path.join(folder, "retrain", "p0.5", "ckpt", "state.json")
    with open(state, encoding="utf-8") as f:
        return [h["loss"] for h in json.load(f)["history"]]


class _Killed(Exception):
    """Stands for a kill right after an epoch's checkpoint."""


@contextlib.contextmanager
def _killed_after(epoch: int):
    from eb_tf.pipeline import trainer  # pylint: disable=import-outside-toplevel
    original = trainer.EpochCheckpoint.on_epoch_end

    def on_epoch_end(self, index, logs=None):
        original(self, index, logs)
        if index + 1 == epoch:
            raise _Killed(epoch)

    trainer.EpochCheckpoint.on_epoch_end = on_epoch_end
    try:
        yield
    finally:
        trainer.EpochCheckpoint.on_epoch_end = original


def retrain(workdir: str) -> dict:
    """Search and draw on one device; retrain the ticket on it and, killed after one
    epoch and resumed, under MirroredStrategy over 2 CPUs."""
    _split_cpu(2)
    import eb_tf  # pylint: disable=import-outside-toplevel
    from eb_tf import distribute  # pylint: disable=import-outside-toplevel
    from eb_tf.pipeline import runner
    cfg = dict(CONFIG, sync_bn=True, threshold=0.17)  # ticket at epoch 2: 2 retrain epochs
    single, mirrored = os.path.join(workdir, "default"), os.path.join(workdir, "mirrored")
    runner.run(cfg, single, ("search", "draw"), print_summary=False)
    shutil.copytree(single, mirrored)
    out = {"default": {}, "mirrored": {}}
    cfg_mirrored = dict(cfg, strategy="mirrored")
    with _killed_after(3):
        try:
            runner.run(cfg_mirrored, mirrored, ("retrain",), print_summary=False)
        except _Killed:
            with open(os.path.join(mirrored, "retrain", "p0.5", "ckpt", "state.json"),
                      encoding="utf-8") as f:
                out["mirrored"]["killed_at"] = json.load(f)["epoch"]
    for name, folder, run_cfg in (("default", single, cfg), ("mirrored", mirrored,
                                                               cfg_mirrored)):
        report = runner.run(run_cfg, folder, ("retrain",), print_summary=False)
        out[name].update(losses=_retrain_losses(folder), final=report["final"]["0.5"],
                         distribute=report["distribute"]["retrain"])
    out["ticket"] = report["ticket"]["0.5"]
    # The library path: a ticket pruned on the host, rebuilt under the strategy.
    strategy = distribute.get_strategy("mirrored")
    host = eb_tf.load_ticket(os.path.join(mirrored, "tickets", "p0.5")).model
    replica = distribute.to_strategy(host, strategy)
    out["to_strategy"] = {
        "in_scope": all(strategy.extended.variable_created_in_scope(v)
                        for v in replica.variables),
        "same_weights": all(np.array_equal(a, b) for a, b in zip(host.get_weights(),
                                                                 replica.get_weights())),
        "sync_bn": sorted({type(l).__name__ for l in replica.layers if "bn" in l.name})}
    return out


def worker(workdir: str) -> dict:
    """One MultiWorkerMirroredStrategy worker (TF_CONFIG set by the test) of a search."""
    from eb_tf import distribute  # pylint: disable=import-outside-toplevel
    from eb_tf.pipeline import runner
    chief = distribute.is_chief()
    used = distribute.write_dir(workdir)
    cfg = dict(CONFIG, strategy="multi_worker", sync_bn=True)
    report = runner.run(cfg, workdir, ("search",), print_summary=False)
    eb = report["eb"]["0.5"]
    return {"chief": chief, "write_dir": used, "epoch": eb["epoch"], "found": eb["found"],
            "distances": eb["distances"], "distribute": report["distribute"]["search"],
            "write_dir_exists_after": os.path.exists(used)}


def main(argv):
    mode, workdir = argv[1], argv[2]
    CONFIG["keras_version"] = int(os.environ.get(KERAS_VERSION_ENV, "2"))
    result = {"compare": compare, "retrain": retrain, "worker": worker}[mode](workdir)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
