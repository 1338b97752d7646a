"""Scale out on tf.distribute: strategies, cluster roles (who writes), synchronized BN.

Modules in import order: `cluster` (TF_CONFIG roles, chief-only writes), `sync_bn`
(`sync_batchnorm`), `strategy` (`get_strategy`, global batch, lr scaling, `to_strategy`).

Example:

    from eb_tf import distribute
    strategy = distribute.get_strategy("mirrored")
    with strategy.scope():
        model = distribute.sync_batchnorm(model)
"""
from eb_tf.distribute.cluster import (TaskInfo, is_chief, remove_write_dir, task_info, worker_dir,
                                      write_dir)
from eb_tf.distribute.strategy import (LR_REFERENCE_BATCH, LR_SCALINGS, STRATEGIES, get_strategy,
                                       per_replica_batch, scaled_lr, shard_by_data, to_strategy)
from eb_tf.distribute.sync_bn import sync_batchnorm

__all__ = ["STRATEGIES", "LR_SCALINGS", "LR_REFERENCE_BATCH", "TaskInfo", "get_strategy",
           "task_info", "is_chief", "write_dir", "remove_write_dir", "worker_dir",
           "per_replica_batch", "scaled_lr", "shard_by_data", "to_strategy",
           "sync_batchnorm"]
