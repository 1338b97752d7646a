"""The pairwise mask-distance matrix of a run's search, and its heatmap (paper Fig. 3).

The search records the channel mask of every epoch and ratio in
`WORKDIR/search/masks/p{r:g}.npz`; entry (i, j) of the matrix is the normalised
Hamming distance between the masks of epochs i and j (`eb_tf.distance_matrix`). The
heatmap (drawn by `eb_tf.pipeline.plots.distance_heatmap`) marks the EB epoch, its
window and the threshold recorded in the run's report.json.

Example:

    from eb_tf.pipeline import mask_plots
    epochs, matrix = mask_plots.run_distance_matrix("/tmp/eb_quickstart", 0.5)
    mask_plots.plot_distance_matrix("/tmp/eb_quickstart", 0.5, "/tmp/fig3.png")
"""
import io
import os
from typing import Optional, Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.pipeline import plots, run_dir, trainer
from eb_tf.sparsity import masks as masks_lib

__all__ = ["run_distance_matrix", "plot_distance_matrix", "eb_marks"]


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


def eb_marks(workdir: str, ratio: float) -> dict:
    """{"eb_epoch", "threshold", "window"} of `ratio` from the run's report.json (the
    heatmap's marks); `eb_epoch` is None when no ticket emerged, {} without a report."""
    path = os.path.join(workdir, "report.json")
    entry = io_utils.read_json(path).get("eb", {}).get(run_dir.ratio_name(ratio)) \
        if os.path.exists(path) else None
    if not entry:
        return {}
    return {"eb_epoch": entry.get("found_epoch", entry.get("epoch") if entry.get("found")
                                  else None),
            "threshold": entry.get("threshold"), "window": entry.get("window")}


def plot_distance_matrix(workdir: str, ratio: float, out: str,
                         title: Optional[str] = None) -> np.ndarray:
    """Writes the heatmap PNG to `out` (and the matrix to `out` with .npy), atomically.

    The EB epoch, its window and the threshold of the run's report.json are marked
    (`eb_tf.pipeline.plots.distance_heatmap`); `title` defaults to
    `mask distance, p = <ratio>`.

    Returns:
      The (n, n) distance matrix.
    """
    epochs, matrix = run_distance_matrix(workdir, ratio)
    plots.distance_heatmap(epochs, matrix, title or f"mask distance, p = {ratio:g}",
                           path=out, **eb_marks(workdir, ratio))
    npy = io.BytesIO()
    np.save(npy, matrix)
    io_utils.atomic_write_bytes(os.path.splitext(out)[0] + ".npy", npy.getvalue())
    return matrix
