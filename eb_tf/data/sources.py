"""In-memory image sources: `npz:PATH`, `dir:PATH` and the embedded `digits`.

Each loader returns an `ArraySource`: uint8 images `(N, H, W, C)`, int32 labels,
a train pool and a test split, the class names and the default augmentation.
The validation split is carved from the train pool later (`splits.py`), with the
seed; the test split here never depends on the seed.

Paths may start with `~` (the user's home). Example, the shared CIFAR-10 decoded into
the eb_tf cache by `python -m eb_tf.data.cache cifar10` (see `cache.py`):

    src = sources.load_npz("~/.cache/eb_tf/cifar10.npz")
    src.x_train.shape    # (50000, 32, 32, 3)
"""
import dataclasses
import os
import zipfile
from typing import List, Optional, Tuple

import numpy as np

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
TEST_DIR_NAMES = ("test", "val", "validation")
_DIGITS_TEST_SEED = 20200426   # fixed: the digits test split never depends on `seed`


@dataclasses.dataclass
class ArraySource:
    """A dataset held in memory: uint8 images (N, H, W, C) and int32 labels."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    policy: str


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 pixels of uint8, integer (0..255) or float ([0, 1] or [0, 255]) images.

    Raises:
      ValueError: NaN/Inf values, or values outside the pixel range (floats are read as
        [0, 1] when their maximum is <= 1, else as [0, 255], and rounded), naming the
        array (`what`) and how many values are bad.
    """
    if x.ndim == 3:                       # (N, H, W): grayscale, as keras.datasets.mnist
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{what} must have shape (N, H, W, C) or (N, H, W), got {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            bad = int(np.count_nonzero((x < 0) | (x > 255)))
            raise ValueError(f"{what} holds {bad} of {x.size} integers outside 0..255 "
                             f"({x.min()}..{x.max()}); store uint8 pixels.")
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):  # floats: [0, 1] or [0, 255]
        finite = np.isfinite(x)
        if not finite.all():
            nan = int(np.count_nonzero(np.isnan(x)))
            raise ValueError(f"{what} holds {nan} NaN and {x.size - int(finite.sum()) - nan} "
                             f"Inf values (of {x.size}); pixels must be finite: repair or "
                             "drop those images, or store uint8 pixels.")
        scale = 255.0 if x.size and float(x.max()) <= 1.0 else 1.0
        pixels = np.round(x * scale)
        bad = int(np.count_nonzero((pixels < 0) | (pixels > 255)))
        if bad:
            kind = "[0, 1] (its maximum is <= 1)" if scale == 255.0 else "[0, 255]"
            raise ValueError(f"{what} holds {bad} of {x.size} float values outside the pixel "
                             f"range {kind}: {x.min():g}..{x.max():g}; store un-normalised "
                             "pixels in [0, 1] or [0, 255] (eb_tf.data normalises them), "
                             "or uint8 pixels.")
        return pixels.astype(np.uint8)
    raise ValueError(f"{what} has dtype {x.dtype}; expected uint8 pixels.")


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:   # (N, 1), as keras.datasets.cifar10
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what} must hold {n} integer class ids, shape (N,) or (N, 1); "
                         f"got shape {y.shape} and dtype {y.dtype}.")
    if len(y) and y.min() < 0:
        raise ValueError(f"{what} holds negative class ids (min {y.min()}).")
    return y.astype(np.int32)


def check_pair(x_train, x_test, where: str):
    """Raises unless train and test images have the same (H, W, C)."""
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{where}: train and test images differ in shape: x_train "
                         f"{x_train.shape[1:]} vs x_test {x_test.shape[1:]}; all images "
                         f"must share (height, width, channels).")


def load_npz(path: str) -> ArraySource:
    """Arrays in the keras.datasets layout: x_train, y_train, x_test, y_test.

    The cache's `cifar10.npz` (`eb_tf.data.cache`) is decoded from the shared data on
    first use when it is missing, so the configs that read it need no preparation step.
    """
    where = f"npz:{path}"
    path = os.path.expanduser(path)
    # Imported here: `python -m eb_tf.data.cache` must find it not yet imported.
    from eb_tf.data import cache  # pylint: disable=import-outside-toplevel
    cifar10 = cache.cache_path(cache.CIFAR10_FILE)
    if not os.path.isfile(path) and os.path.abspath(path) == cifar10 and \
            cache.shared_cifar10_script():
        print(f"eb_tf.data: decoding the shared CIFAR-10 into {cifar10} (once)", flush=True)
        cache.prepare_cifar10(cifar10)
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no such file. Give the path of an .npz with keys "
                         f"{list(NPZ_KEYS)} (e.g. the shared CIFAR-10, which "
                         f"`python -m eb_tf.data.cache cifar10` decodes into "
                         f"{cache.cache_path(cache.CIFAR10_FILE)}).")
    try:
        with np.load(path, allow_pickle=False) as f:
            found = sorted(f.files)
            missing = [k for k in NPZ_KEYS if k not in found]
            if missing:
                raise ValueError(f"{where}: missing keys {missing}; found {found}, expected "
                                 f"{list(NPZ_KEYS)} (the keras.datasets layout).")
            arrays = {k: f[k] for k in NPZ_KEYS}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(where):
            raise
        raise ValueError(f"{where}: cannot read it as an .npz archive ({e}).") from e
    x_train = _to_uint8(arrays["x_train"], f"{where} x_train")
    x_test = _to_uint8(arrays["x_test"], f"{where} x_test")
    check_pair(x_train, x_test, where)
    y_train = _labels(arrays["y_train"], len(x_train), f"{where} y_train")
    y_test = _labels(arrays["y_test"], len(x_test), f"{where} y_test")
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return ArraySource(where, x_train, y_train, x_test, y_test,
                       [str(i) for i in range(num_classes)], "cifar")


def load_digits(image_size: int = 16, channels: int = 1,
                test_fraction: float = 0.2) -> ArraySource:
    """scikit-learn's 1,797 real 8x8 handwritten digits, upsampled (bilinear) to image_size.

    The test split is a fixed 20% (seed-independent); no flips in augmentation.
    """
    from sklearn.datasets import load_digits as sk_digits  # pylint: disable=import-outside-toplevel

    from eb_tf.compat import tf  # pylint: disable=import-outside-toplevel
    if channels not in (1, 3):
        raise ValueError(f"digits: channels must be 1 or 3, got {channels!r}.")
    bunch = sk_digits()
    x = bunch.images.astype(np.float32)[..., None] * (255.0 / 16.0)   # 0..16 -> 0..255
    if image_size != 8:
        x = tf.image.resize(x, [image_size, image_size], method="bilinear").numpy()
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(_DIGITS_TEST_SEED).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return ArraySource("digits", x[train], y[train], x[test], y[test],
                       [str(i) for i in range(10)], "shift")


def _image_files(folder: str) -> List[Tuple[str, str]]:
    exts = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
    out = []
    for cls in sorted(os.listdir(folder)):
        sub = os.path.join(folder, cls)
        if os.path.isdir(sub):
            out += [(cls, os.path.join(sub, f)) for f in sorted(os.listdir(sub))
                    if f.lower().endswith(exts)]
    return out


def _read_folder(folder: str, class_names: Optional[List[str]], image_size, channels,
                 where: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    files = _image_files(folder)
    if not files:
        raise ValueError(f"{where}: found no images (.jpg/.png/.bmp/.gif) in class "
                         f"sub-folders of {folder!r}; expected {folder}/<class>/<image>.")
    names = class_names or sorted({c for c, _ in files})
    unknown = sorted({c for c, _ in files} - set(names))
    if unknown:
        raise ValueError(f"{where}: {folder!r} has classes {unknown} that the train folder "
                         f"lacks; train classes are {names}.")
    images, labels, first = [], [], None
    for cls, path in files:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size is not None:
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: cannot read image {path!r} ({e}).") from e
        arr = arr[..., None] if arr.ndim == 2 else arr
        if first is None:
            first = (path, arr.shape)
        elif arr.shape != first[1]:
            raise ValueError(f"{where}: images differ in shape: {first[0]!r} is {first[1]} but "
                             f"{path!r} is {arr.shape}; pass image_size=N to resize all.")
        images.append(arr)
        labels.append(names.index(cls))
    return np.stack(images), np.asarray(labels, np.int32), names


def load_dir(path: str, image_size: Optional[int] = None, channels: Optional[int] = None,
             test_fraction: float = 0.2, seed_for_test: int = 0) -> ArraySource:
    """Class sub-folders: `PATH/<class>/*.png`, or `PATH/train/<class>/` + `PATH/test/<class>/`.

    Without a test (or val/validation) folder a fixed `test_fraction` of the images
    (seed-independent) becomes the test split.
    """
    where = f"dir:{path}"
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise ValueError(f"{where}: no such directory. Give a folder of class sub-folders "
                         f"(PATH/<class>/<image>) or PATH/train/<class> + PATH/test/<class>.")
    if channels not in (None, 1, 3):
        raise ValueError(f"{where}: channels must be 1, 3 or None (from the first image), "
                         f"got {channels!r}.")
    train_dir = os.path.join(path, "train")
    train_dir = train_dir if os.path.isdir(train_dir) else path
    if channels is None:
        from PIL import Image  # pylint: disable=import-outside-toplevel
        files = _image_files(train_dir)
        channels = 3
        if files:
            try:
                with Image.open(files[0][1]) as im:
                    channels = 1 if im.mode in ("L", "1", "I;16") else 3
            except OSError as e:
                raise ValueError(f"{where}: cannot read image {files[0][1]!r} ({e}).") from e
    x, y, names = _read_folder(train_dir, None, image_size, channels, where)
    test_dir = next((os.path.join(path, d) for d in TEST_DIR_NAMES
                     if train_dir != path and os.path.isdir(os.path.join(path, d))), None)
    if test_dir is not None:
        x_test, y_test, _ = _read_folder(test_dir, names, image_size, channels, where)
        check_pair(x, x_test, where)
    else:
        order = np.random.default_rng(seed_for_test).permutation(len(x))
        n_test = max(1, int(round(test_fraction * len(x))))
        if n_test >= len(x):
            raise ValueError(f"{where}: {len(x)} images are too few to carve a test split "
                             f"of test_fraction={test_fraction}.")
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        x, x_test, y, y_test = x[train], x[test], y[train], y[test]
    return ArraySource(where, x, y, x_test, y_test, names, "cifar")
