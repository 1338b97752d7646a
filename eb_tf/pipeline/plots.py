"""The plots of a run (report.md) and of the benchmark (bench.png), from plain data.

Each function takes lists, dicts or arrays (never a run folder: `run_report` and
`mask_plots` read those), returns the matplotlib `Figure` and, given `path`, also
writes it there as a PNG, atomically. The figures are built on
`matplotlib.figure.Figure`, not pyplot, so none stays registered anywhere: a returned
figure is freed like any object. matplotlib is imported inside the functions only
(`import eb_tf` does not load it).

| function | what it draws |
| --- | --- |
| `training_curves` | loss (log scale over a range of 10x) and accuracy per epoch of several phases on one epoch axis, with marks (the EB epoch) |
| `mask_distances` | per ratio, the EarlyBird distance per epoch, the threshold and the EB epoch |
| `distance_heatmap` | the pairwise mask-distance matrix (paper Fig. 3), the EB epoch, its window and the threshold |
| `kept_channels` | kept vs total channels per BN layer of a ticket |
| `accuracy_vs_flops` | test accuracy vs training FLOPs, one marker per method (paper Fig. 5) |
| `accuracy_vs_draw_epoch` | retrain accuracy vs draw epoch, one line per schedule (Table 1) |

Lines carry labels (`line.get_label()`), so a test can find the plotted series.

Example:

    from eb_tf.pipeline import plots
    fig = plots.mask_distances({"p=0.5": [None, 0.3, 0.08]}, threshold=0.1,
                               eb_epochs={"p=0.5": 3}, path="/tmp/distance.png")
    fig.axes[0].lines[0].get_ydata()      # [nan, 0.3, 0.08]
"""
import io
import math
from typing import Mapping, Optional, Sequence

import numpy as np

from eb_tf import io_utils

__all__ = ["training_curves", "mask_distances", "distance_heatmap", "kept_channels",
           "accuracy_vs_flops", "accuracy_vs_draw_epoch", "save", "DPI"]

DPI = 110
METRICS = (("loss", "loss"), ("accuracy", "accuracy"))


def _figure(width: float, height: float, rows: int = 1, sharex: bool = False):
    """(figure, axes) on an Agg canvas of its own: no pyplot, no global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, axes


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
    return MaxNLocator(integer=True)


def save(fig, path: str, dpi: int = DPI) -> str:
    """Writes `fig` to `path` as a PNG, atomically; returns `path`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return io_utils.atomic_write_bytes(path, buffer.getvalue())


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path: Optional[str]):
    """Axis labels, grid, legend and title of a one-axes figure; saved to `path`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _done(fig, path)


def _done(fig, path: Optional[str]):
    if path is not None:
        save(fig, path)
    return fig


def _floats(values) -> np.ndarray:
    """None (JSON null: NaN, or not measured) -> NaN."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def training_curves(curves: Mapping[str, Mapping[str, Sequence]],
                    marks: Optional[Mapping[str, float]] = None, title: str = "",
                    xlabel: str = "epoch", path: Optional[str] = None):
    """Loss (log scale when it spans more than 10x) and accuracy per epoch of several
    phases, on one epoch axis.

    Args:
      curves: {phase name: {"epochs": [...], "loss": [...], "accuracy": [...],
        "val_loss": [...], "val_accuracy": [...]}}; the validation series are optional,
        None entries are gaps.
      marks: {label: epoch}: a dotted vertical line on both axes (the EB epoch).
      title, xlabel: of the figure and of the shared epoch axis.
      path: also write the PNG there.

    Returns:
      The figure: `axes[0]` loss, `axes[1]` accuracy; on each, per phase in the order
      of `curves`, the training line (label: the phase name), then the validation line
      (label: `<name> (validation)`), then the marks (label: their key).
    """
    fig, axes = _figure(7.0, 5.6, rows=2, sharex=True)
    for ax, (metric, label) in zip(axes, METRICS):
        for i, (name, series) in enumerate(curves.items()):
            epochs = np.asarray(series["epochs"], dtype=float)
            ax.plot(epochs, _floats(series[metric]), color=f"C{i}", marker=".", label=name)
            if series.get(f"val_{metric}") is not None:
                ax.plot(epochs, _floats(series[f"val_{metric}"]), color=f"C{i}",
                        linestyle="--", label=f"{name} (validation)")
        for j, (name, epoch) in enumerate((marks or {}).items()):
            ax.axvline(epoch, color="0.3" if len(marks) == 1 else f"C{(7 + j) % 10}",
                       linestyle=":", linewidth=1.4, label=name)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    losses = np.concatenate([_floats(c["loss"]) for c in curves.values()]
                            + [_floats(c["val_loss"]) for c in curves.values()
                               if c.get("val_loss") is not None] + [np.array([math.nan])])
    if np.nanmin(losses, initial=math.inf) > 0 and \
            np.nanmax(losses, initial=0.0) > 10 * np.nanmin(losses, initial=math.inf):
        axes[0].set_yscale("log")  # a range of more than 10x: log
    axes[1].xaxis.set_major_locator(_integer_ticks())
    axes[0].legend(fontsize=8, ncol=2)
    axes[1].set_xlabel(xlabel)
    if title:
        fig.suptitle(title)
    return _done(fig, path)


def mask_distances(distances: Mapping[str, Sequence[Optional[float]]], threshold: float,
                   eb_epochs: Optional[Mapping[str, Optional[int]]] = None,
                   epochs: Optional[Mapping[str, Sequence[int]]] = None,
                   previous: Optional[Mapping[str, Sequence[float]]] = None,
                   window: Optional[int] = None, title: str = "",
                   path: Optional[str] = None):
    """The EarlyBird mask distance per epoch, the threshold and the EB epochs.

    Args:
      distances: {label (e.g. "p=0.5"): per epoch, the largest distance of the epoch's
        mask to the older masks of the window, None until the window is full} (report.json
        `eb[r]["distances"]`).
      threshold: the EB threshold: a horizontal line.
      eb_epochs: {label: the epoch the ticket emerged at, or None}: a vertical line per
        found ticket.
      epochs: {label: the epoch of each distance}; default 1, 2, ...
      previous: {label: distance of each epoch's mask to the one before it, from the
        second epoch on}: a thin dotted line (it exists before the window is full).
      window: the EB window, for the legend.
      path: also write the PNG there.

    Returns:
      The figure; `axes[0].lines`: per label, the distance line (label: the label),
      then its `previous` line if given (`<label>, to the previous epoch`); then the
      threshold line (`threshold <t>`), then one line per found EB epoch
      (`EB epoch <label>: <t>`).
    """
    fig, (ax,) = _figure(6.4, 3.8)
    window_text = f" (max over the window of {window})" if window else ""
    for i, (name, values) in enumerate(distances.items()):
        xs = (epochs or {}).get(name)
        xs = list(range(1, len(values) + 1)) if xs is None else list(xs)
        ax.plot(np.asarray(xs, float), _floats(values), color=f"C{i}", marker="o",
                markersize=4, label=f"{name}{window_text}" if i == 0 else name)
        if previous and previous.get(name) is not None:
            prev = _floats(previous[name])
            ax.plot(np.asarray(xs[1:1 + len(prev)], float), prev, color=f"C{i}", linestyle=":",
                    linewidth=1, label=f"{name}, to the previous epoch")
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    names = list(distances)
    for name, epoch in (eb_epochs or {}).items():
        if epoch is not None:
            ax.axvline(epoch, color=f"C{names.index(name)}" if name in names else "k",
                       linestyle=":", linewidth=1.5, label=f"EB epoch {name}: {epoch}")
    ax.set_xlim(0.5, max([1.0] + [float(x) for line in ax.lines for x in line.get_xdata()])
                + 0.5)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalised Hamming distance")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _done(fig, path)


def distance_heatmap(epochs: Sequence[int], matrix: np.ndarray, title: str = "",
                     eb_epoch: Optional[int] = None, threshold: Optional[float] = None,
                     window: Optional[int] = None, path: Optional[str] = None):
    """The pairwise mask-distance matrix of the search epochs (paper Fig. 3).

    Args:
      epochs: the epoch of each row/column (n,).
      matrix: (n, n) normalised Hamming distances between the masks of those epochs.
      title: of the axes.
      eb_epoch: marked by a dashed cross (row and column), with the `window` epochs that
        ended there outlined (the masks EarlyBird compared).
      threshold: the border of the cells within it (`axes[0].collections`, labelled
        `border of distance <= <t>`) and a line on the colour bar.
      path: also write the PNG there.

    Returns:
      The figure: `axes[0]` the heatmap (`images[0]` holds `matrix`; lines: the EB
      column `EB epoch <t>` then the EB row), `axes[1]` the colour bar (its line: the
      threshold).
    """
    from matplotlib.patches import Rectangle  # pylint: disable=import-outside-toplevel
    epochs = np.asarray(epochs)
    matrix = np.asarray(matrix, dtype=float)
    fig, (ax,) = _figure(5.6, 4.6)
    lo, hi = epochs[0] - 0.5, epochs[-1] + 0.5
    image = ax.imshow(matrix, cmap="coolwarm_r", vmin=0.0,
                      vmax=max(float(matrix.max()) if matrix.size else 0.0, 1e-6),
                      extent=(lo, hi, hi, lo), interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, label="normalised Hamming distance")
    if eb_epoch is not None:
        ax.axvline(eb_epoch, color="k", linestyle="--", linewidth=1, label=f"EB epoch {eb_epoch}")
        ax.axhline(eb_epoch, color="k", linestyle="--", linewidth=1)
        if window:
            first = max(eb_epoch - window + 1, epochs[0])
            ax.add_patch(Rectangle((first - 0.5, first - 0.5), eb_epoch - first + 1,
                                   eb_epoch - first + 1, fill=False, edgecolor="gold",
                                   linewidth=2.5, label=f"window of {window} at the EB epoch"))
    if threshold is not None:
        bar.ax.axhline(threshold, color="k", linewidth=2)
        edges = _region_edges(epochs, matrix <= threshold)
        if edges:
            from matplotlib.collections import LineCollection  # pylint: disable=import-outside-toplevel
            ax.add_collection(LineCollection(edges, colors="k", linewidths=1.0,
                                             label=f"border of distance <= {threshold:g}"))
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_xlabel("epoch")
    ax.set_ylabel("epoch")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncol=2,
                   frameon=False)
    if title:
        ax.set_title(title)
    return _done(fig, path)


def _region_edges(epochs: np.ndarray, inside: np.ndarray) -> list:
    """Cell edges between `inside` and outside cells of a heatmap (its staircase border)."""
    lo = epochs[0] - 0.5
    edges = []
    rows, cols = inside.shape
    for i in range(rows):
        for j in range(cols):
            if j + 1 < cols and inside[i, j] != inside[i, j + 1]:
                edges.append([(lo + j + 1, lo + i), (lo + j + 1, lo + i + 1)])
            if i + 1 < rows and inside[i, j] != inside[i + 1, j]:
                edges.append([(lo + j, lo + i + 1), (lo + j + 1, lo + i + 1)])
    return edges


def kept_channels(channels: Sequence[Mapping], title: str = "", path: Optional[str] = None):
    """Kept vs total channels per BN layer of a ticket (a ticket meta.json's `channels`).

    Args:
      channels: per layer in network order, {"key": BN name, "kept": int, "total": int}.
      path: also write the PNG there.

    Returns:
      The figure; `axes[0].containers[0]` the total bars, `containers[1]` the kept bars
      (`bar.get_height()`), labelled `total` and `kept`.
    """
    names = [str(c["key"]) for c in channels]
    kept = [int(c["kept"]) for c in channels]
    total = [int(c["total"]) for c in channels]
    fig, (ax,) = _figure(min(max(4.0, 1.0 + 0.35 * len(names)), 16.0), 3.8)
    xs = np.arange(len(names))
    ax.bar(xs, total, color="0.85", edgecolor="0.6", label="total")
    ax.bar(xs, kept, color="C0", width=0.6, label="kept")
    step = max(1, math.ceil(len(names) / 60))
    ax.set_xticks(xs[::step], names[::step], rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _done(fig, path)


def accuracy_vs_flops(series: Sequence[Mapping], title: str = "", path: Optional[str] = None):
    """Test accuracy vs total training FLOPs, one marker per method (paper Fig. 5).

    Args:
      series: per method, {"label", "flops": [...], "accuracy": [...], "marker" (a
        matplotlib marker), "hollow" (bool: a variant), "notes": [text per point or None]}.
      path: also write the PNG there.

    Returns:
      The figure; `axes[0].collections[i]` the points of `series[i]`.
    """
    fig, (ax,) = _figure(6.4, 4.4)
    for s in series:
        style = {"facecolors": "none", "edgecolors": "C3"} if s.get("hollow") else {}
        ax.scatter(s["flops"], s["accuracy"], marker=s.get("marker", "o"),
                   s=90 if s.get("marker") == "*" else 55, label=s["label"], **style)
        for x, y, note in zip(s["flops"], s["accuracy"], s.get("notes") or ()):
            if note:
                ax.annotate(note, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    return _finish(fig, ax, "total training FLOPs", "test accuracy", title, path)


def accuracy_vs_draw_epoch(series: Mapping[str, Mapping], title: str = "",
                           path: Optional[str] = None):
    """Retrain test accuracy of tickets vs the epoch they were drawn at (paper Table 1).

    Args:
      series: {label (e.g. a learning-rate schedule): {"epochs": [...], "accuracy": [...],
        "eb_epoch": the EB epoch or None}}; the EB epoch's point gets a star.
      path: also write the PNG there.

    Returns:
      The figure; `axes[0].lines[i]` the line of the i-th series (label: its key).
    """
    fig, (ax,) = _figure(6.4, 4.4)
    for i, (label, s) in enumerate(series.items()):
        ax.plot(s["epochs"], _floats(s["accuracy"]), color=f"C{i}", marker="o", label=label)
        if s.get("eb_epoch") in list(s["epochs"]):
            at = list(s["epochs"]).index(s["eb_epoch"])
            ax.scatter([s["eb_epoch"]], [s["accuracy"][at]], marker="*", s=180, color=f"C{i}",
                       edgecolors="k", zorder=3, label=f"{label}: EB epoch {s['eb_epoch']}")
    ax.xaxis.set_major_locator(_integer_ticks())
    return _finish(fig, ax, "draw epoch", "retrain test accuracy", title, path)
