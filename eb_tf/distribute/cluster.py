"""This process's role in a tf.distribute cluster, and where it may write.

TensorFlow's multi-worker rule: every worker runs the same program, including the code
that saves (it reads BN statistics through collective ops), but only the chief keeps
its files; the others write to temporary folders that are deleted afterwards.
`task_info`/`is_chief` read the role from the strategy's cluster resolver or from
`TF_CONFIG`; `write_dir`, `remove_write_dir` and `worker_dir` give each process its
folder. All are re-exported by `eb_tf.distribute`.

Example:

    from eb_tf import distribute
    with distribute.worker_dir("/shared/run", strategy) as folder:
        ...   # the chief writes /shared/run, the others a temporary copy
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Iterator, Optional

from eb_tf.compat import tf

__all__ = ["TaskInfo", "task_info", "is_chief", "write_dir", "remove_write_dir",
           "worker_dir"]


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """This process's place in the cluster: task type/id, worker count, chief or not."""
    task_type: Optional[str]
    task_id: int
    num_workers: int
    is_chief: bool


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"the TF_CONFIG environment variable is not valid JSON ({e}): "
                         f"{raw!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got "
                         f"{raw!r}")
    return config


def task_info(strategy=None) -> TaskInfo:
    """Task type/id and chief status, from the strategy's cluster resolver or TF_CONFIG.

    As TensorFlow decides it: the `chief` task if the cluster has one, else `worker` 0;
    a process outside any cluster is the chief. `MirroredStrategy`, the default strategy
    and `TPUStrategy` (one client drives every TPU core) have a single, chief, process.
    With `strategy=None` the `TF_CONFIG` environment variable is read.

    Example:
      >>> # TF_CONFIG='{"cluster": {"worker": ["a:1", "b:1"]},
      >>> #             "task": {"type": "worker", "index": 1}}'
      >>> eb_tf.distribute.task_info()
      TaskInfo(task_type='worker', task_id=1, num_workers=2, is_chief=False)

    Raises:
      ValueError: TF_CONFIG is set but is not a JSON object.
    """
    if strategy is None:
        config = _tf_config()
        cluster, task = config.get("cluster", {}), config.get("task", {})
        task_type, task_id = task.get("type"), int(task.get("index", 0))
    else:
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
            return TaskInfo(None, 0, 1, True)
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    workers = sum(len(cluster.get(job, ())) for job in ("chief", "worker"))
    if not task_type:
        chief = True
    elif "chief" in cluster:
        chief = task_type == "chief"
    else:
        chief = task_type == "worker" and task_id == 0
    return TaskInfo(task_type or None, task_id, max(workers, 1), chief)


def is_chief(strategy=None) -> bool:
    """True in the process that keeps tickets, reports and checkpoints (see `task_info`).

    Example:
      >>> if eb_tf.distribute.is_chief(strategy):
      ...     print("writing the report")
    """
    return task_info(strategy).is_chief


def write_dir(path: str, strategy=None) -> str:
    """Where this process writes what belongs in `path`: `path` itself on the chief.

    Other workers get `<tmp>/eb_tf_<task><id>_<hash of path>/<basename>` (the system
    temporary folder, `TMPDIR`), which `remove_write_dir` deletes: they run the same
    saving code as the chief (it reads BN statistics through collective ops) without
    touching the chief's files.

    Example:
      >>> eb = eb_tf.EarlyBird(save_dir=distribute.write_dir("run/eb", strategy))
      >>> model.fit(..., callbacks=[eb])
      >>> distribute.remove_write_dir("run/eb", strategy)
    """
    path = os.fspath(path)
    info = task_info(strategy)
    if info.is_chief:
        return path
    absolute = os.path.abspath(path)
    digest = hashlib.sha1(absolute.encode("utf-8")).hexdigest()[:10]
    root = os.path.join(tempfile.gettempdir(),
                        f"eb_tf_{info.task_type}{info.task_id}_{digest}")
    return os.path.join(root, os.path.basename(absolute.rstrip(os.sep)) or "root")


def remove_write_dir(path: str, strategy=None) -> None:
    """Deletes a non-chief's temporary `write_dir(path)`; nothing on the chief."""
    target = write_dir(path, strategy)
    if target != os.fspath(path):
        shutil.rmtree(os.path.dirname(target), ignore_errors=True)


@contextlib.contextmanager
def worker_dir(path: str, strategy=None, copy_existing: bool = True) -> Iterator[str]:
    """Yields the folder this process works in: `path` on the chief, a temp copy elsewhere.

    A non-chief starts from a copy of the chief's `path` when it exists (a shared
    filesystem: so that a resumed run restores the same state on every worker) and
    its folder is deleted when the block ends, whether or not it succeeded.

    Example:
      >>> with distribute.worker_dir("/shared/run", strategy) as folder:
      ...     train_and_save_everything_into(folder)
    """
    target = write_dir(path, strategy)
    if target == os.fspath(path):
        yield target
        return
    remove_write_dir(path, strategy)
    if copy_existing and os.path.isdir(path):
        _copy_tree(path, target)
    os.makedirs(target, exist_ok=True)
    try:
        yield target
    finally:
        remove_write_dir(path, strategy)


def _copy_tree(source: str, target: str, attempts: int = 3) -> None:
    """copytree of a folder the chief may be replacing atomically: retried, staging skipped."""
    ignore = shutil.ignore_patterns(".tmp-*", ".old-*")
    for attempt in range(attempts):
        try:
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
            return
        except (shutil.Error, FileNotFoundError):
            if attempt == attempts - 1:
                raise
