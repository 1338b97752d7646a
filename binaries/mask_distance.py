r"""Pairwise mask-distance matrix of a run's search, as a heatmap PNG (paper Fig. 3).

    python -m binaries.mask_distance --workdir=/tmp/eb_quickstart
    python -m binaries.mask_distance --workdir=/tmp/eb_run --ratio=0.5 --out=/tmp/fig3.png

Entry (i, j) is the normalised Hamming distance between the channel masks drawn at
epochs i and j of the search (warm = close). Writes, per ratio, WORKDIR/mask_distance_p<r>.png
(or --out for a single ratio) and the matrix as .npy beside it.
"""
import os

from absl import flags

from binaries import cli

_WORKDIR = cli.define_run_flags("Run folder of a search (eb, ns or lt).").workdir
_RATIO = flags.DEFINE_float("ratio", None, "Pruning ratio to plot (default: every ratio).")
_OUT = flags.DEFINE_string("out", None, "PNG path (only with a single ratio).")
cli.register_path_validator("out", cli.check_file)


@cli.main
def main():
    from eb_tf.pipeline import mask_plots  # after flag parsing: --help stays fast
    cfg = cli.resolve_config(None, _WORKDIR.value)  # the run folder's own config
    ratios = cfg.ratios if _RATIO.value is None else (_RATIO.value,)
    if _OUT.value and len(ratios) != 1:
        raise ValueError(f"--out needs a single ratio; the run has {cfg.ratios}: pass --ratio")
    for ratio in ratios:
        out = _OUT.value or os.path.join(_WORKDIR.value, f"mask_distance_p{ratio:g}.png")
        matrix = mask_plots.plot_distance_matrix(_WORKDIR.value, ratio, out)
        print(f"p={ratio:g}: {matrix.shape[0]} epochs -> {out}")


def run():
    """`python -m binaries.mask_distance` as a function."""
    cli.run(main)


if __name__ == "__main__":
    run()
