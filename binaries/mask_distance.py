r"""Pairwise mask-distance matrix of a run's search, as a heatmap PNG (paper Fig. 3).

    python -m binaries.mask_distance --workdir=/tmp/eb_quickstart
    python -m binaries.mask_distance --workdir=/tmp/eb_run --ratio=0.5 --out=/tmp/fig3.png

Entry (i, j) is the normalised Hamming distance between the channel masks drawn at
epochs i and j of the search (warm = close). Writes, per ratio, WORKDIR/mask_distance_p<r>.png
(or --out for a single ratio) and the matrix as .npy beside it.
"""
import os

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder of a search (eb, ns or lt).")
_RATIO = flags.DEFINE_float("ratio", None, "Pruning ratio to plot (default: every ratio).")
_OUT = flags.DEFINE_string("out", None, "PNG path (only with a single ratio).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eb_tf.pipeline import mask_plots, run_dir
    try:
        cfg = run_dir.RunDir.existing(_WORKDIR.value).cfg
        ratios = cfg.ratios if _RATIO.value is None else (_RATIO.value,)
        if _OUT.value and len(ratios) != 1:
            raise ValueError(f"--out needs a single ratio; the run has {cfg.ratios}: pass "
                             "--ratio")
        for ratio in ratios:
            out = _OUT.value or os.path.join(_WORKDIR.value, f"mask_distance_p{ratio:g}.png")
            matrix = mask_plots.plot_distance_matrix(_WORKDIR.value, ratio, out)
            print(f"p={ratio:g}: {matrix.shape[0]} epochs -> {out}")
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    app.run(main)
