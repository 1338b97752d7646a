"""`Splits`: train / validation / test tf.data pipelines with deterministic epochs.

`train(k)` is a function of (seed, k) only: the epoch's order is a stateless
shuffle keyed by (seed, k) and each example's augmentation is keyed by (seed, k,
example id) (in-memory data) or (seed, k, position) (streamed data), so epoch k
is the same whether or not epochs before it were iterated, in this process or in
the one a run resumes from, and whatever TF's global seed. Streamed data (tfds
ImageNet) is shuffled within consecutive blocks of `shuffle_buffer` still-encoded
examples (tfds writes its files pre-shuffled), then decoded. Batches never span
epochs.

Example:

    splits = eb_tf.data.load("digits", batch_size=64)
    model.fit(splits.train_epochs(0, 10), epochs=10,
              steps_per_epoch=splits.steps_per_epoch, validation_data=splits.validation())
"""
import functools
import math
from typing import Iterator, List, Optional, Tuple

import numpy as np

from eb_tf.compat import tf
from eb_tf.data import augment

AUTOTUNE = tf.data.AUTOTUNE

__all__ = ["Splits", "pipeline_options"]


def pipeline_options() -> tf.data.Options:
    """The tf.data options of every Splits pipeline: tf.data's autotuner off.

    Measured on 2 CPU cores (VGG-16 width 0.25, CIFAR-10, batch 128): with the
    autotuner on, a fresh iterator put a whole epoch into a mode of exactly 127.7 ms
    per step instead of ~85 ms, in about half of the epochs (4 of 8 on a constant
    dataset, 0 of 8 with it off); the cores were then partly idle. With it off,
    `AUTOTUNE` parallelism falls back to the number of cores and prefetch buffers to
    tf.data's own adaptive sizing, and the values are unchanged.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class Splits:
    """One dataset's train/validation/test pipelines (see `eb_tf.data.load`).

    Attributes:
      name: the dataset name given to `load`.
      num_classes, input_shape: what the model needs (`input_shape` = (H, W, C)).
      num_train, num_validation, num_test: examples per split (after carving/subset).
      batch_size, steps_per_epoch: batches of `train(k)` (`drop_remainder` respected).
      seed: keys the validation carve-out, the subset, the shuffles and augmentation.
      augment: the training augmentation policy (`cifar`, `shift`, `imagenet`, `none`).
      mean, std: the per-channel normalisation, from the training images.
      class_names: label names, index = class id.
    """

    def __init__(self, *, name, train, validation, test, counts: Tuple[int, int, int],
                 num_classes: int, input_shape, batch_size: int, seed: int, policy: str,
                 mean, std, class_names: List[str], drop_remainder: bool,
                 variable_size: bool, shuffle_buffer: int):
        self.name = name
        self._train, self._validation, self._test = train, validation, test
        self.num_train, self.num_validation, self.num_test = counts
        self.num_classes = int(num_classes)
        self.input_shape = tuple(input_shape)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.augment = policy
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.class_names = list(class_names)
        self.drop_remainder = bool(drop_remainder)
        self._variable_size = variable_size
        self._shuffle_buffer = shuffle_buffer
        self._in_memory = isinstance(train, tuple)

    def __repr__(self):
        return (f"Splits({self.name!r}, input_shape={self.input_shape}, num_classes="
                f"{self.num_classes}, train/validation/test={self.num_train}/"
                f"{self.num_validation}/{self.num_test}, batch_size={self.batch_size}, "
                f"augment={self.augment!r}, seed={self.seed})")

    @property
    def steps_per_epoch(self) -> int:
        """Batches in one training epoch."""
        rounding = math.floor if self.drop_remainder else math.ceil
        return int(rounding(self.num_train / self.batch_size))

    @property
    def validation_steps(self) -> int:
        return int(math.ceil(self.num_validation / self.batch_size))

    @property
    def test_steps(self) -> int:
        return int(math.ceil(self.num_test / self.batch_size))

    # ------------------------------------------------------------------ training
    def _decode(self, image):
        """Streamed tfds images arrive encoded (decoded after the shuffle); arrays as uint8."""
        if image.dtype != tf.string:
            return image
        image = tf.io.decode_image(image, channels=self.input_shape[2], expand_animations=False)
        image.set_shape([None, None, self.input_shape[2]])
        return image

    def _epoch(self, epoch):
        """The augmented, normalised batches of one epoch (epoch: int64 tensor).

        Only stateless ops: the result does not depend on TF's global seed either.
        In-memory images of one size are gathered and augmented a batch at a time.
        """
        size, seed, policy = self.input_shape[0], self.seed, self.augment
        variable, mean, std = self._variable_size, self.mean, self.std
        key = augment.epoch_key(seed, epoch)
        batch = functools.partial(tf.data.Dataset.batch, batch_size=self.batch_size,
                                  drop_remainder=self.drop_remainder)

        def view(image, label, index):
            image = augment.train_transform(policy, self._decode(image),
                                            augment.example_key(seed, epoch, index), size,
                                            variable)
            return augment.normalize(image, mean, std), label

        if self._in_memory:
            x, y = self._train
            order = batch(tf.data.Dataset.from_tensor_slices(
                tf.random.experimental.stateless_shuffle(
                    tf.range(self.num_train, dtype=tf.int64), seed=key)))
            if variable or policy == "imagenet":
                return batch(order.unbatch().map(
                    lambda j: view(tf.gather(x, j), tf.gather(y, j), j),
                    num_parallel_calls=AUTOTUNE))
            pad = max(1, size // 8)
            offsets, flips = augment.epoch_shifts(seed, epoch, self.num_train, pad)

            def batch_view(ids):
                images = tf.gather(x, ids)
                if policy != "none":
                    images = augment.batch_pad_crop(
                        images, tf.gather(offsets, ids), pad,
                        tf.gather(flips, ids) if policy == "cifar" else None)
                return augment.normalize(images, mean, std), tf.gather(y, ids)

            return order.map(batch_view, num_parallel_calls=AUTOTUNE)
        # Streamed: permute blocks of `shuffle_buffer` encoded examples with stateless
        # keys (tf.data's shuffle would mix in TF's global seed).
        block_key = tf.random.experimental.stateless_fold_in(key, tf.constant(-1, tf.int64))

        def permute(block, xy):
            perm = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(xy[1])[0]),
                seed=tf.random.experimental.stateless_fold_in(block_key, block))
            return tf.gather(xy[0], perm), tf.gather(xy[1], perm)

        ds = self._train.batch(max(1, self._shuffle_buffer)).enumerate().map(permute).unbatch()
        return batch(ds.enumerate().map(lambda i, xy: view(xy[0], xy[1], i),
                                        num_parallel_calls=AUTOTUNE))

    def train_epochs(self, initial_epoch: int = 0, epochs: int = 1) -> tf.data.Dataset:
        """Batches of epochs `initial_epoch .. epochs-1` back to back, for `model.fit`.

        Pass `epochs`, `initial_epoch` and `steps_per_epoch=splits.steps_per_epoch` to
        `fit` with it; epoch k of this dataset equals `train(k)`.

        Raises:
          ValueError: if not 0 <= initial_epoch < epochs.
        """
        ints = (int, np.integer)
        if not (isinstance(initial_epoch, ints) and isinstance(epochs, ints)
                and 0 <= initial_epoch < epochs):
            raise ValueError(f"train_epochs needs ints 0 <= initial_epoch < epochs, got "
                             f"initial_epoch={initial_epoch!r}, epochs={epochs!r}.")
        ds = tf.data.Dataset.range(int(initial_epoch), int(epochs))
        return ds.flat_map(self._epoch).prefetch(AUTOTUNE).with_options(pipeline_options())

    def train(self, epoch: int = 0) -> tf.data.Dataset:
        """The shuffled, augmented batches of training epoch `epoch` (deterministic)."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"train(epoch) needs an int epoch >= 0, got {epoch!r}.")
        return self.train_epochs(int(epoch), int(epoch) + 1)

    # ---------------------------------------------------------------- evaluation
    def _eval(self, part) -> tf.data.Dataset:
        size, policy, variable = self.input_shape[0], self.augment, self._variable_size
        mean, std = self.mean, self.std
        ds = tf.data.Dataset.from_tensor_slices(part) if isinstance(part, tuple) else part
        ds = ds.map(lambda x, y: (augment.normalize(
            augment.eval_transform(policy, self._decode(x), size, variable), mean, std), y),
            num_parallel_calls=AUTOTUNE)
        return ds.batch(self.batch_size).prefetch(AUTOTUNE).with_options(pipeline_options())

    def validation(self) -> Optional[tf.data.Dataset]:
        """Batched validation set carved from train (None when validation_fraction=0)."""
        return None if self._validation is None else self._eval(self._validation)

    def test(self) -> tf.data.Dataset:
        """Batched test set (never used for tuning or early decisions)."""
        return self._eval(self._test)

    def _fixed_train(self, n: int):
        """The first `n` training examples of a fixed order, not yet decoded or augmented:
        a permutation keyed by `seed` alone (in-memory data), the stored order (streamed)."""
        if not self._in_memory:
            return self._train.take(n)
        pick = np.random.default_rng(self.seed).permutation(self.num_train)[:n]
        return tf.gather(self._train[0], pick), tf.gather(self._train[1], pick)

    def representative(self, n: int = 100) -> Iterator[list]:
        """Yields `[x]`, x float32 of shape (1, H, W, C): `n` training images, eval view.

        For TFLite int8 calibration:
        `converter.representative_dataset = lambda: splits.representative(100)`.
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"representative(n) needs an int n >= 1, got {n!r}.")
        for x, _ in self._eval(self._fixed_train(int(n))).unbatch().take(n):
            yield [x[None].numpy().astype(np.float32)]

    def calibration_batches(self, batches: int) -> tf.data.Dataset:
        """Up to `batches` full batches of training images, eval view (no augmentation).

        The same images in the same order on every call, in every process, whatever
        TF's seeds: the first ones of `representative`'s fixed order (a permutation keyed
        by `seed`; streamed data: the stored order). Only full batches of `batch_size`
        (at most `num_train // batch_size`), unless the training set is smaller than one
        batch: then one batch of all of it. For re-estimating BatchNorm statistics.
        """
        if not isinstance(batches, (int, np.integer)) or batches < 1:
            raise ValueError(f"calibration_batches(batches) needs an int batches >= 1, got "
                             f"{batches!r}.")
        full = min(int(batches), self.num_train // self.batch_size)
        n = full * self.batch_size if full else self.num_train
        return self._eval(self._fixed_train(n))
