"""tensorflow-datasets sources: cifar10, cifar100, imagenet2012 and any image dataset.

tensorflow_datasets is imported here only, and only when a tfds dataset is
loaded, so `import eb_tf` stays fast. Fixed-size datasets that fit in memory
(CIFAR, MNIST, ...) become an `ArraySource`; the rest (ImageNet: images of varying
size) stream as a `StreamSource`. The test split is `test`, or `validation` where
the dataset has none (ImageNet). The validation split of a streamed dataset is the
first `n` examples of `train` (tfds slicing `train[:n]`); under
`tfds.testing.mock_data`, whose `info.splits` is empty and which ignores slicing,
the examples are counted and split with `take`/`skip` after loading.

Example:

    src = tfds_source.load("cifar10", data_dir="~/tensorflow_datasets")
"""
import dataclasses
from typing import List, Optional

import numpy as np

from eb_tf.compat import tf
from eb_tf.data import sources

IN_MEMORY_BYTES = 2 ** 31         # fixed-size datasets below 2 GiB of pixels load into RAM
_TEST_SPLIT = {"imagenet2012": "validation", "imagenet2012_subset": "validation",
               "imagenet_resized": "validation", "imagenette": "validation"}


@dataclasses.dataclass
class StreamSource:
    """A tfds dataset read from disk: unbatched (encoded image bytes, int32 label) datasets."""
    name: str
    train: tf.data.Dataset
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset
    num_train: int
    num_validation: int
    num_test: int
    image_shape: tuple            # (H, W, C), H and W None for images of varying size
    class_names: List[str]
    policy: str


def _import_tfds():
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    return tfds


def _builder(name: str, data_dir, download: bool, manual_dir):
    tfds = _import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends: one message for all
        raise ValueError(f"Unknown dataset {name!r}: tensorflow-datasets has no builder of "
                         f"that name ({type(e).__name__}). Known kinds: 'digits', 'cifar10', "
                         f"'cifar100', 'imagenet2012', any tfds image classification name "
                         f"(tfds.list_builders()), 'npz:PATH', 'dir:PATH'.") from e
    if download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        builder.download_and_prepare(download_config=config)
    return builder


def _check_supervised(builder, name):
    info = builder.info
    keys = info.supervised_keys
    features = info.features
    if (not keys or len(keys) != 2 or not hasattr(features[keys[1]], "num_classes")
            or len(features[keys[0]].shape) != 3):
        raise ValueError(f"tfds dataset {name!r} is not an image classification dataset "
                         f"(supervised_keys={keys}); eb_tf needs (image, label) pairs with "
                         f"images of shape (H, W, C) and a ClassLabel.")
    return features[keys[0]].shape, features[keys[1]]


def _as_supervised(builder, split, encoded=False):
    """(image, int32 label) pairs; images still encoded (JPEG/PNG bytes) if `encoded`."""
    kwargs = {}
    if encoded:
        kwargs["decoders"] = {builder.info.supervised_keys[0]: _import_tfds().decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False, **kwargs)
    return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)))


def _count(ds) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def _to_numpy(ds):
    xs, ys = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int32)


def load(name: str, data_dir=None, download: bool = True, manual_dir=None,
         validation_fraction: float = 0.1):
    """Loads a tfds image classification dataset as an ArraySource or a StreamSource."""
    builder = _builder(name, data_dir, download, manual_dir)
    image_shape, label = _check_supervised(builder, name)
    known = dict(builder.info.splits)          # empty under tfds.testing.mock_data
    if known:
        test_split = next((s for s in ("test", "validation") if s in known), None)
    else:
        test_split = _TEST_SPLIT.get(name, "test")
    class_names = [str(n) for n in label.names]
    fixed = None not in image_shape
    if fixed and "train" in known:
        size = known["train"].num_examples * int(np.prod(image_shape))
        fixed = size <= IN_MEMORY_BYTES
    policy = "cifar" if fixed else "imagenet"
    if fixed:
        x_train, y_train = _to_numpy(_as_supervised(builder, "train"))
        if test_split is None:
            raise ValueError(f"tfds dataset {name!r} has no 'test' or 'validation' split "
                             f"(splits: {sorted(known)}); use npz: with your own split.")
        x_test, y_test = _to_numpy(_as_supervised(builder, test_split))
        sources.check_pair(x_train, x_test, name)
        return sources.ArraySource(name, x_train, y_train, x_test, y_test, class_names, policy)

    if known:
        n_pool = known["train"].num_examples
        n_val = int(round(validation_fraction * n_pool))
        train = _as_supervised(builder, f"train[{n_val}:]", encoded=True)
        validation = _as_supervised(builder, f"train[:{n_val}]", True) if n_val else None
        n_test = known[test_split].num_examples
    else:                                      # mock: no split sizes, slicing ignored
        pool = _as_supervised(builder, "train", encoded=True)
        n_pool = _count(pool)
        n_val = int(round(validation_fraction * n_pool))
        train, validation = pool.skip(n_val), (pool.take(n_val) if n_val else None)
        n_test = None
    test = _as_supervised(builder, test_split, encoded=True)
    n_test = _count(test) if n_test is None else n_test
    return StreamSource(name, train, validation, test, n_pool - n_val, n_val, n_test,
                        tuple(image_shape), class_names, policy)
