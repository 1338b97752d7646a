"""Datasets as deterministic tf.data pipelines: `eb_tf.data.load(name, ...) -> Splits`.

Kinds of `name`:

* `digits` (the default): scikit-learn's real 8x8 handwritten digits (1,797 images,
  shipped inside scikit-learn, so it works offline), upsampled to 16x16x1;
* `cifar10`, `cifar100`, `imagenet2012` (manual download dir) and any tfds image
  classification name, also as `tfds:NAME` (tensorflow_datasets is imported lazily);
* `npz:PATH`: the keras.datasets layout (x_train, y_train, x_test, y_test);
* `dir:PATH`: class sub-folders, `PATH/<class>/*` or `PATH/{train,test}/<class>/*`.

Decoded copies of data sets live in one cache folder, `~/.cache/eb_tf` (or
`$EB_TF_CACHE`); `eb_tf.data.cache` names it and the shared data folder, and
`python -m eb_tf.data.cache cifar10` decodes the shared CIFAR-10 into it once.

Example:

    import eb_tf
    splits = eb_tf.data.load("npz:~/.cache/eb_tf/cifar10.npz", batch_size=256, seed=0)
    model.fit(splits.train_epochs(0, 160), epochs=160,
              steps_per_epoch=splits.steps_per_epoch, validation_data=splits.validation())
    model.evaluate(splits.test())
"""
from typing import Optional, Sequence

import numpy as np

from eb_tf.data import augment as augment_lib
from eb_tf.data import sources
from eb_tf.data.splits import Splits

__all__ = ["load", "Splits", "KINDS"]

KINDS = ("digits", "cifar10", "cifar100", "imagenet2012", "<any tfds image dataset>",
         "tfds:NAME", "npz:PATH", "dir:PATH")


def _check_args(batch_size, validation_fraction, train_subset, augment_arg, seed):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if isinstance(validation_fraction, bool) or not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}.")
    if train_subset is not None and (isinstance(train_subset, bool) or not (
            (isinstance(train_subset, (int, np.integer)) and train_subset >= 1)
            or (isinstance(train_subset, float) and 0.0 < train_subset <= 1.0))):
        raise ValueError(f"train_subset must be None, an int >= 1 (examples) or a float in "
                         f"(0, 1] (fraction), got {train_subset!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    if augment_arg not in (True, False):
        augment_lib.check_policy(augment_arg)


def _subset_size(train_subset, available: int, where: str) -> int:
    if train_subset is None:
        return available
    n = int(round(train_subset * available)) if isinstance(train_subset, float) \
        else int(train_subset)
    if n > available:
        raise ValueError(f"{where}: train_subset={train_subset!r} exceeds the {available} "
                         f"training examples left after the validation split.")
    return max(1, n)


def _mean_std(x: np.ndarray):
    """Per-channel mean and std of uint8 images, in [0, 1] units (float64 sums, chunked)."""
    total = np.zeros(x.shape[-1])
    total_sq = np.zeros(x.shape[-1])
    for i in range(0, len(x), 2048):
        chunk = x[i:i + 2048].reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk ** 2).sum(0)
    count = max(1, len(x) * x.shape[1] * x.shape[2])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return tuple(mean), tuple(np.maximum(std, 1e-3))


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    from eb_tf.compat import tf  # pylint: disable=import-outside-toplevel
    if x.shape[1:3] == (size, size):
        return x
    out = [tf.image.resize(x[i:i + 1024], [size, size], method="bilinear").numpy()
           for i in range(0, len(x), 1024)]
    return np.clip(np.round(np.concatenate(out)), 0, 255).astype(np.uint8)


def _source(name, image_size, channels, test_fraction, data_dir, download, manual_dir,
            validation_fraction):
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a dataset name string, one of {list(KINDS)}; "
                         f"got {name!r}.")
    kind, _, arg = name.partition(":")
    if name == "digits":
        return sources.load_digits(image_size or 16, channels or 1, test_fraction)
    if kind == "npz" and arg:
        return sources.load_npz(arg)
    if kind == "dir" and arg:
        return sources.load_dir(arg, image_size, channels, test_fraction)
    if ":" in name and kind != "tfds":
        raise ValueError(f"Unknown dataset {name!r}: known kinds are {list(KINDS)}.")
    from eb_tf.data import tfds_source  # pylint: disable=import-outside-toplevel
    return tfds_source.load(arg if kind == "tfds" else name, data_dir=data_dir,
                            download=download, manual_dir=manual_dir,
                            validation_fraction=validation_fraction)


def load(name: str = "digits", batch_size: int = 256, seed: int = 0,
         validation_fraction: float = 0.1, train_subset=None, augment=True,
         data_dir: Optional[str] = None, *, image_size: Optional[int] = None,
         channels: Optional[int] = None, test_fraction: float = 0.2,
         mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
         drop_remainder: bool = False, shuffle_buffer: int = 10_000, download: bool = True,
         manual_dir: Optional[str] = None) -> Splits:
    """Loads a dataset as train/validation/test pipelines (see the module docstring).

    Args:
      name: a dataset kind (`KINDS`): `digits`, a tfds name, `npz:PATH` or `dir:PATH`.
      batch_size: examples per batch, for training and evaluation.
      seed: keys the validation carve-out, the subset, shuffles and augmentation.
      validation_fraction: the share of the training data held out for validation,
        in [0, 1); the test split is never used for decisions.
      train_subset: train on only this many examples (int) or this fraction (float).
      augment: True (the dataset's default policy), False, or a policy of
        `eb_tf.data.augment.POLICIES`: `cifar`, `shift`, `imagenet`, `none`.
      data_dir: the tfds data directory.
      image_size: the model's input size: resizes in-memory images, or the crop size
        of streamed ones (default: the dataset's size; 224 for ImageNet; 16 for digits).
      channels: 1 or 3, for `digits` and `dir:` images.
      test_fraction: the fixed (seed-independent) test share for data without a
        test split (`digits`, `dir:` without a test folder).
      mean, std: per-channel normalisation in [0, 1] units; default: computed on the
        training images (in-memory data) or ImageNet's (streamed data).
      drop_remainder: drop the last partial training batch of each epoch.
      shuffle_buffer: the per-epoch shuffle buffer of streamed (tfds, on-disk) data.
      download, manual_dir: tfds `download_and_prepare` (manual_dir for ImageNet).

    Returns:
      A `Splits`.

    Raises:
      ValueError: for an unknown dataset (listing the kinds), a missing or corrupt
        path, an npz without the expected keys, mismatched image shapes or a bad
        argument.

    Example:

        splits = load("digits", batch_size=64)
        x, y = next(iter(splits.train(0)))      # (64, 16, 16, 1) float32, (64,) int32
    """
    _check_args(batch_size, validation_fraction, train_subset, augment, seed)
    if isinstance(test_fraction, bool) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    src = _source(name, image_size, channels, test_fraction, data_dir, download, manual_dir,
                  validation_fraction)
    policy = src.policy if augment is True else "none" if augment is False else augment
    if isinstance(src, sources.ArraySource):
        return _in_memory(src, name, batch_size, seed, validation_fraction, train_subset,
                          policy, image_size, channels, mean, std, drop_remainder)
    shape = src.image_shape
    variable = None in shape[:2]
    if variable and policy in ("cifar", "shift"):
        raise ValueError(f"{name}: augment={policy!r} needs images of one size, but "
                         f"{name} images vary in size; use 'imagenet' or False.")
    size = image_size or (224 if variable else shape[0])
    n_train = _subset_size(train_subset, src.num_train, name)
    train = src.train.take(n_train) if n_train < src.num_train else src.train
    return Splits(name=name, train=train, validation=src.validation, test=src.test,
                  counts=(n_train, src.num_validation, src.num_test),
                  num_classes=len(src.class_names), input_shape=(size, size, shape[2]),
                  batch_size=batch_size, seed=seed, policy=policy,
                  mean=mean or augment_lib.IMAGENET_MEAN, std=std or augment_lib.IMAGENET_STD,
                  class_names=src.class_names, drop_remainder=drop_remainder,
                  variable_size=variable or size != shape[0],
                  shuffle_buffer=shuffle_buffer)


def _in_memory(src, name, batch_size, seed, validation_fraction, train_subset, policy,
               image_size, channels, mean, std, drop_remainder) -> Splits:
    from eb_tf.compat import tf  # pylint: disable=import-outside-toplevel
    x, y, x_test, y_test = src.x_train, src.y_train, src.x_test, src.y_test
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{name}: images have {x.shape[-1]} channels, channels={channels} "
                         f"was asked for; only digits and dir: convert channels.")
    if image_size is not None:
        x, x_test = _resize(x, image_size), _resize(x_test, image_size)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(validation_fraction * len(x)))
    if n_val >= len(x):
        raise ValueError(f"{name}: validation_fraction={validation_fraction} leaves no "
                         f"training examples out of {len(x)}.")
    val_idx = np.sort(order[:n_val])
    train_idx = np.sort(order[n_val:][:_subset_size(train_subset, len(x) - n_val, name)])
    x_train, y_train = x[train_idx], y[train_idx]
    if mean is None or std is None:
        data_mean, data_std = _mean_std(x_train)
        mean, std = mean or data_mean, std or data_std
    const = tf.constant
    return Splits(
        name=name, train=(const(x_train), const(y_train)),
        validation=(const(x[val_idx]), const(y[val_idx])) if n_val else None,
        test=(const(x_test), const(y_test)),
        counts=(len(train_idx), n_val, len(x_test)), num_classes=len(src.class_names),
        input_shape=x.shape[1:], batch_size=batch_size, seed=seed, policy=policy,
        mean=mean, std=std, class_names=src.class_names, drop_remainder=drop_remainder,
        variable_size=False, shuffle_buffer=0)
