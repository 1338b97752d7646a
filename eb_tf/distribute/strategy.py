"""Scale out on tf.distribute: strategies, chief-only writes, global batch and LR scaling.

EB Train runs on TensorFlow's own distribution engine, unchanged: create the strategy
first (before any other TensorFlow op, as multi-worker training requires), build,
clone and compile inside `strategy.scope()`, prune on the host, rebuild the ticket in
the scope. Batches are GLOBAL (split over the replicas); the EarlyBird callback reads
the replicated gammas, equal on every replica and worker, so all workers decide alike;
every worker runs the same saving code (it reads BN statistics through collectives) but
only the chief's files are kept (`write_dir`). `tpu` cannot be tested here.

    from eb_tf import distribute
    strategy = distribute.get_strategy("mirrored")        # or multi_worker, tpu
    with strategy.scope():
        model = eb_tf.sync_batchnorm(eb_tf.models.build("vgg16", 10, (32, 32, 3)))
        model = eb_tf.add_weight_decay(eb_tf.add_bn_l1(model, 1e-4), 1e-4)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss, metrics)
    eb = eb_tf.EarlyBird(save_dir=distribute.write_dir("run/eb", strategy))
    model.fit(splits.train_epochs(0, T), epochs=T, callbacks=[eb], ...)  # GLOBAL batch
    ticket = distribute.to_strategy(eb_tf.prune(model, eb.tickets[0.5]), strategy)
    distribute.remove_write_dir("run/eb", strategy)

The pipeline (`eb_tf.pipeline.runner.run`) does all of this from the config fields
`strategy`, `sync_bn` and `lr_scaling` (see `eb_tf.pipeline.distributed`).
"""
from typing import Dict, Optional, Sequence

from eb_tf.compat import check_tf_keras_model, keras, tf

__all__ = ["STRATEGIES", "LR_SCALINGS", "LR_REFERENCE_BATCH", "get_strategy",
           "per_replica_batch", "scaled_lr", "shard_by_data", "to_strategy"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
LR_SCALINGS = ("none", "linear")
LR_REFERENCE_BATCH = 256  # the batch the paper's lr 0.1 is for (Goyal et al.'s rule)

# Strategies created so far, by (name, devices or tpu). One per key and process: a second
# MirroredStrategy over the same devices clashes with the first in the collective ops, a
# second MultiWorkerMirroredStrategy cannot reconfigure them, a TPU initialises once.
_CREATED: Dict[tuple, object] = {}


def get_strategy(name: str = "default", devices: Optional[Sequence[str]] = None,
                 tpu: Optional[str] = None):
    """The `tf.distribute.Strategy` called `name`; create it before any other TF op.

    Args:
      name: `default` (the current strategy: the one whose scope is open, else
        TensorFlow's no-op default), `mirrored` (one machine, all its GPUs, or all
        logical CPU devices when there is no GPU), `multi_worker`
        (`MultiWorkerMirroredStrategy` over the cluster in the `TF_CONFIG` environment
        variable; one per process) or `tpu` (`TPUStrategy`).
      devices: `mirrored` only: the devices, e.g. ["/gpu:0", "/gpu:1"].
      tpu: `tpu` only: the TPU name or address for `TPUClusterResolver` (None: from
        the environment, "local" on a TPU VM).

    Example:
      >>> strategy = eb_tf.distribute.get_strategy("mirrored")
      >>> strategy.num_replicas_in_sync
      2

    Raises:
      ValueError: an unknown name, `devices`/`tpu` given for another strategy, or
        `multi_worker` asked for after TensorFlow ran its first op.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices={devices!r} applies to strategy 'mirrored' only, not "
                         f"{name!r}")
    if tpu is not None and name != "tpu":
        raise ValueError(f"tpu={tpu!r} applies to strategy 'tpu' only, not {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored" and devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    key = (name, tuple(devices) if devices is not None else tpu)
    if key not in _CREATED:
        _CREATED[key] = _create(name, devices, tpu)
    return _CREATED[key]


def _create(name, devices, tpu):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices))
    if name == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:  # "Collective ops must be configured at program startup"
            raise ValueError(
                f"strategy 'multi_worker' must be created before any other TensorFlow op "
                f"({e}): call eb_tf.distribute.get_strategy('multi_worker') at the start of "
                "the program, before loading data or building models") from e
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def per_replica_batch(global_batch: int, strategy=None) -> int:
    """The batch each replica computes on when datasets are batched by `global_batch`.

    Example:
      >>> distribute.per_replica_batch(256, strategy)    # 8 GPUs
      32

    Raises:
      ValueError: `global_batch` is not a positive multiple of the number of replicas.
    """
    replicas = (strategy or tf.distribute.get_strategy()).num_replicas_in_sync
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) \
            or global_batch < 1 or global_batch % replicas:
        raise ValueError(f"batch_size={global_batch!r} is the GLOBAL batch; it must be a "
                         f"positive multiple of the {replicas} replicas in sync, so that "
                         "every replica gets the same share")
    return global_batch // replicas


def scaled_lr(lr: float, global_batch: int, scaling: str = "none",
              reference_batch: int = LR_REFERENCE_BATCH) -> float:
    """The learning rate for `global_batch`: `lr` ("none") or lr x B / reference ("linear").

    Example:
      >>> scaled_lr(0.1, 1024, "linear")      # 4 x the paper's batch of 256
      0.4

    Raises:
      ValueError: `scaling` is not one of `LR_SCALINGS`.
    """
    if scaling not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {scaling!r}")
    return float(lr) if scaling == "none" else float(lr) * global_batch / reference_batch


def shard_by_data(dataset):
    """`dataset` with tf.data's DATA auto-shard policy (workers split each global batch).

    The default (AUTO) shards file-backed datasets (tfds) by file, which gives each
    worker its own epoch length and order; DATA keeps the single-device batch sequence.

    Example:
      >>> model.fit(distribute.shard_by_data(splits.train_epochs(0, 160)), ...)
    """
    if dataset is None:
        return None
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def to_strategy(model, strategy):
    """A copy of `model` (weights copied) whose variables live under `strategy`.

    Prune on the host (outside the scope), then rebuild the ticket under the strategy.

    Example:
      >>> ticket = distribute.to_strategy(eb_tf.prune(model, masks), strategy)
      >>> with strategy.scope():
      ...     ticket.compile(...)

    Raises:
      ValueError: `model` is not a tf_keras model.
    """
    check_tf_keras_model(model, "eb_tf.distribute.to_strategy")
    from eb_tf.quantization import qat
    with strategy.scope(), qat.quantize_scope():
        clone = keras.models.clone_model(model)
        if model.built and not clone.built:
            clone.build(model.input_shape)
        clone.set_weights(model.get_weights())
    return clone
