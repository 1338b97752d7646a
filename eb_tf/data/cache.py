"""Where eb_tf keeps decoded data sets, and where it finds the shared data folder.

* `cache_dir()`: the one cache folder for decoded data, `$EB_TF_CACHE` when that is
  set, else `~/.cache/eb_tf`; `cache_path("cifar10.npz")` is a file in it.
* `shared_data_dir()`: the shared (read-only) data folder, `$EB_TF_SHARED_DATA` when
  that is set, else `../shared/data` relative to the project root (the folder that
  holds `eb_tf/`, `configs/` and `binaries/`); see that folder's README.

Neither creates nor checks anything; `prepare_cifar10()` does the one-time decode of the
shared CIFAR-10 (`cifar10-jpeg.npz`) into the cache, also from the command line:

    python -m eb_tf.data.cache cifar10    # ~5 s once; prints ~/.cache/eb_tf/cifar10.npz
    python -m eb_tf.data.cache            # prints the cache and shared data folders

Example:

    from eb_tf.data import cache
    splits = eb_tf.data.load(f"npz:{cache.prepare_cifar10()}", batch_size=128)
"""
import os
import subprocess
import sys
from typing import Optional, Sequence

__all__ = ["CACHE_ENV", "SHARED_DATA_ENV", "PROJECT_ROOT", "CIFAR10_FILE", "cache_dir",
           "cache_path", "shared_data_dir", "shared_cifar10_script", "prepare_cifar10"]

CACHE_ENV = "EB_TF_CACHE"
SHARED_DATA_ENV = "EB_TF_SHARED_DATA"
DEFAULT_CACHE = os.path.join("~", ".cache", "eb_tf")
CIFAR10_FILE = "cifar10.npz"         # the decoded shared CIFAR-10, in the cache folder
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cache_dir() -> str:
    """The absolute cache folder: `$EB_TF_CACHE` if set (and non-empty), else ~/.cache/eb_tf."""
    return os.path.abspath(os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE))


def cache_path(name: str) -> str:
    """The absolute path of `name` inside `cache_dir()` (not created)."""
    return os.path.join(cache_dir(), name)


def shared_data_dir(root: Optional[str] = None) -> str:
    """The shared data folder: `$EB_TF_SHARED_DATA` if set, else `<root>/../shared/data`.

    Args:
      root: the project root; default: the folder that holds this `eb_tf` package.
    """
    folder = os.environ.get(SHARED_DATA_ENV) or os.path.join(root or PROJECT_ROOT, "..",
                                                             "shared", "data")
    return os.path.abspath(os.path.expanduser(folder))


def shared_cifar10_script(root: Optional[str] = None) -> str:
    """The shared folder's `cifar10_npz.py` decoder, or '' when its cifar10-jpeg.npz is absent."""
    folder = shared_data_dir(root)
    if os.path.isfile(os.path.join(folder, "cifar10-jpeg.npz")):
        return os.path.join(folder, "cifar10_npz.py")
    return ""


def prepare_cifar10(path: Optional[str] = None, root: Optional[str] = None) -> str:
    """Decodes the shared CIFAR-10 into `path` (default: cache_path('cifar10.npz')) once.

    Does nothing when `path` exists; otherwise creates its folder and runs the shared
    `cifar10_npz.py` (atomic). Returns the absolute path.

    Raises:
      FileNotFoundError: `path` is missing and there is no shared CIFAR-10 to decode.
    """
    path = os.path.abspath(os.path.expanduser(path or cache_path(CIFAR10_FILE)))
    if os.path.exists(path):
        return path
    script = shared_cifar10_script(root)
    if not script:
        raise FileNotFoundError(
            f"{path} is missing and there is no shared CIFAR-10 to decode it from: "
            f"{shared_data_dir(root)} has no cifar10-jpeg.npz (set ${SHARED_DATA_ENV} to "
            f"the shared data folder).")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run([sys.executable, script, path], check=True)
    return path


def main(argv: Sequence[str]) -> int:
    """`python -m eb_tf.data.cache [cifar10]`: prints the folders, or prepares CIFAR-10."""
    if not argv:
        print(f"cache folder (${CACHE_ENV}): {cache_dir()}")
        print(f"shared data folder (${SHARED_DATA_ENV}): {shared_data_dir()}")
        return 0
    if list(argv) != ["cifar10"]:
        print("usage: python -m eb_tf.data.cache [cifar10]", file=sys.stderr)
        return 2
    try:
        print(prepare_cifar10())
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
