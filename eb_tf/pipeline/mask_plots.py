"""The pairwise mask-distance matrix of a run's search, and its heatmap (paper Fig. 3).

The search records the channel mask of every epoch and ratio in
`WORKDIR/search/masks/p{r:g}.npz`; entry (i, j) of the matrix is the normalised
Hamming distance between the masks of epochs i and j (`eb_tf.distance_matrix`).

Example:

    from eb_tf.pipeline import mask_plots
    epochs, matrix = mask_plots.run_distance_matrix("/tmp/eb_quickstart", 0.5)
    mask_plots.plot_distance_matrix("/tmp/eb_quickstart", 0.5, "/tmp/fig3.png")
"""
import io
import os
from typing import Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.pipeline import trainer
from eb_tf.sparsity import masks as masks_lib

__all__ = ["run_distance_matrix", "plot_distance_matrix"]


def run_distance_matrix(workdir: str, ratio: float) -> Tuple[np.ndarray, np.ndarray]:
    """(epochs (n,), distances (n, n)) of the masks a run's search drew for `ratio`.

    Raises:
      ValueError: the run recorded no masks for `ratio` (a `dense` run, a ratio the
        run did not track, or a search that has not finished an epoch yet).
    """
    path = os.path.join(workdir, "search", "masks", f"p{ratio:g}.npz")
    if not os.path.exists(path):
        found = sorted(os.listdir(os.path.dirname(path))) \
            if os.path.isdir(os.path.dirname(path)) else []
        raise ValueError(f"no masks recorded for ratio {ratio:g} in {workdir!r} (looked for "
                         f"{path}; recorded: {found or 'none'}). Method 'dense' records none.")
    history = trainer.read_mask_history(path)
    return history["epochs"], masks_lib.distance_matrix(list(history["masks"]))


def plot_distance_matrix(workdir: str, ratio: float, out: str) -> np.ndarray:
    """Writes the heatmap PNG to `out` (and the matrix to `out` with .npy), atomically.

    Returns:
      The (n, n) distance matrix.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs, matrix = run_distance_matrix(workdir, ratio)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    extent = (epochs[0] - 0.5, epochs[-1] + 0.5, epochs[-1] + 0.5, epochs[0] - 0.5)
    image = ax.imshow(matrix, cmap="coolwarm_r", vmin=0.0, vmax=max(float(matrix.max()), 1e-6),
                      extent=extent, interpolation="nearest")
    ax.set_xlabel("epoch")
    ax.set_ylabel("epoch")
    ax.set_title(f"mask distance, p = {ratio:g}")
    fig.colorbar(image, ax=ax, label="normalised Hamming distance")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    io_utils.atomic_write_bytes(out, buffer.getvalue())
    npy = io.BytesIO()
    np.save(npy, matrix)
    io_utils.atomic_write_bytes(os.path.splitext(out)[0] + ".npy", npy.getvalue())
    return matrix
