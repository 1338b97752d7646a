"""What every phase of a run starts from: its data, its dense model, its seeds.

`load_splits(cfg)` loads the `eb_tf.data` splits a run config names;
`build_dense_model(cfg, splits)` builds the zoo model with the regularisers its method
trains with; `determinism(cfg)` seeds everything and turns op determinism on for a run
(off again afterwards); `check_model_name(cfg)` fails on an unknown model before any
data is loaded.

Example:

    from eb_tf.pipeline import build, config as eb_config
    cfg = eb_config.from_config_dict({"dataset": "digits", "model": "convnet"})
    with build.determinism(cfg):
        splits = build.load_splits(cfg)
        model = build.build_dense_model(cfg, splits)
"""
import contextlib

from eb_tf import data, models
from eb_tf.compat import set_random_seed, tf
from eb_tf.distribute import sync_bn
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import methods
from eb_tf.sparsity.regularizers import add_bn_l1, add_weight_decay

__all__ = ["load_splits", "build_dense_model", "determinism", "check_model_name"]


def load_splits(cfg: eb_config.RunConfig):
    """The `eb_tf.data.load` splits a config asks for."""
    return data.load(cfg.dataset, batch_size=cfg.batch_size, seed=cfg.seed,
                     validation_fraction=cfg.validation_fraction,
                     train_subset=cfg.train_subset or None, augment=cfg.augment,
                     data_dir=cfg.data_dir or None)


def build_dense_model(cfg: eb_config.RunConfig, splits):
    """The zoo model with coupled weight decay and, if the method asks, the L1 on gammas
    (a tf_keras model, or a Keras 3 one with `config.keras_version=3`)."""
    set_random_seed(cfg.seed)
    model = models.build(cfg.model, splits.num_classes, tuple(splits.input_shape),
                         width=cfg.width, keras_version=cfg.keras_version)
    if cfg.sync_bn:  # BN statistics over the global batch
        model = sync_bn.sync_batchnorm(model)
    if cfg.weight_decay:
        model = add_weight_decay(model, cfg.weight_decay)
    if methods.get(cfg.method).search_l1 and cfg.l1:
        model = add_bn_l1(model, cfg.l1)
    return model


@contextlib.contextmanager
def determinism(cfg: eb_config.RunConfig):
    """Seeds everything; op determinism on for the run (and off again afterwards)."""
    from tensorflow.python.framework import config as tf_config  # is/disable: not public
    was = tf_config.is_op_determinism_enabled()
    set_random_seed(cfg.seed)
    if cfg.deterministic and not was:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if cfg.deterministic and not was:
            tf_config.disable_op_determinism()


def check_model_name(cfg: eb_config.RunConfig) -> None:
    """Raises a ValueError naming `config.model` unless the zoo (or a loader) knows it."""
    if ":" not in cfg.model and cfg.model not in models.names():
        raise ValueError(f"config.model={cfg.model!r} is not a known model; known: "
                         f"{', '.join(models.names())}, 'keras:<Application>' or "
                         "'package.module:function'")
