"""The pipeline's side of tf.distribute: the strategy, folders and scopes of one run.

`eb_tf.pipeline.run` opens one `pipeline(cfg, workdir)` around its phases. It creates the
strategy named by `config.strategy` (before any other TensorFlow op: multi-worker
training needs that), checks that `config.batch_size` (the GLOBAL batch) splits evenly
over the replicas, applies `config.lr_scaling`, and gives each phase

- `run.scope(phase)`: `strategy.scope()` for the phases that build and train models
  (search, retrain: model building, `add_bn_l1`, compile, fit, checkpoint restore),
  nothing for `draw` and `export` (pruning and conversion happen on the host; the
  retrain rebuilds the pruned model from its `.keras` file inside the scope);
- `run.workdir`: the run folder on the chief; on the other workers a temporary copy
  (`distribute.worker_dir`) that is deleted at the end, so only the chief's tickets,
  reports and checkpoints exist afterwards while every worker runs the same code;
- `run.splits(splits)`: datasets that multi-worker training shards by data, keeping
  the single-device sequence of global batches;
- `run.cfg`: the config the phases train with (learning rate scaled).

Example (what `eb_tf.pipeline.run` does):

    with distributed.pipeline(cfg, workdir) as dist:
        rd = run_dir.RunDir.open(dist.workdir, cfg)
        with dist.scope("search"):
            search.search(dist.cfg, rd, dist.splits(splits))
"""
import contextlib
import dataclasses
from typing import Iterator

from eb_tf import distribute
from eb_tf.compat import tf

__all__ = ["DistributedRun", "pipeline", "TRAINING_PHASES"]

TRAINING_PHASES = ("search", "retrain")


class _DataShardedSplits:
    """An `eb_tf.data` Splits whose datasets carry the DATA auto-shard policy."""

    def __init__(self, splits):
        self._splits = splits

    def __getattr__(self, name):
        return getattr(self._splits, name)

    def __repr__(self):
        return f"DataSharded({self._splits!r})"

    def train_epochs(self, *args, **kwargs):
        return distribute.shard_by_data(self._splits.train_epochs(*args, **kwargs))

    def train(self, *args, **kwargs):
        return distribute.shard_by_data(self._splits.train(*args, **kwargs))

    def validation(self):
        return distribute.shard_by_data(self._splits.validation())

    def test(self):
        return distribute.shard_by_data(self._splits.test())


@dataclasses.dataclass(frozen=True)
class DistributedRun:
    """One run's strategy and where this process writes (see the module docstring).

    Attributes:
      strategy: the `tf.distribute.Strategy`.
      cfg: the `RunConfig` to train with (`lr` scaled per `lr_scaling`).
      workdir: the folder this process writes: the run folder on the chief.
      task: `distribute.TaskInfo` of this process.
    """
    strategy: object
    cfg: object
    workdir: str
    task: distribute.TaskInfo

    def scope(self, phase: str):
        """`strategy.scope()` for search and retrain; a no-op context otherwise."""
        default = self.strategy is tf.distribute.get_strategy() \
            and not tf.distribute.has_strategy()
        if phase in TRAINING_PHASES and not default:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def splits(self, splits):
        """`splits` itself, or sharded by data when several workers share the batches."""
        if splits is None or self.task.num_workers == 1:
            return splits
        return _DataShardedSplits(splits)

    def describe(self) -> dict:
        """The report's `distribute` section: strategy, replicas, batch and lr used."""
        replicas = self.strategy.num_replicas_in_sync
        return {"strategy": self.cfg.strategy, "class": type(self.strategy).__name__,
                "num_replicas": replicas, "num_workers": self.task.num_workers,
                "global_batch": self.cfg.batch_size,
                "per_replica_batch": self.cfg.batch_size // replicas,
                "sync_bn": self.cfg.sync_bn, "lr_scaling": self.cfg.lr_scaling,
                "lr": self.cfg.lr}


@contextlib.contextmanager
def pipeline(cfg, workdir: str, strategy=None) -> Iterator[DistributedRun]:
    """Creates the run's strategy and yields its `DistributedRun`; cleans up after.

    Args:
      cfg: a validated `eb_tf.pipeline.config.RunConfig`.
      workdir: the run folder.
      strategy: a strategy to use instead of creating `cfg.strategy` (library use).

    Raises:
      ValueError: `config.batch_size` is not a multiple of the number of replicas.
    """
    if strategy is None:
        strategy = distribute.get_strategy(cfg.strategy)
    try:
        distribute.per_replica_batch(cfg.batch_size, strategy)
    except ValueError as e:
        raise ValueError(f"config.{e} (config.strategy={cfg.strategy!r})") from None
    lr = distribute.scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    train_cfg = cfg if lr == cfg.lr else dataclasses.replace(cfg, lr=lr)
    with distribute.worker_dir(workdir, strategy) as folder:
        yield DistributedRun(strategy, train_cfg, folder, distribute.task_info(strategy))
