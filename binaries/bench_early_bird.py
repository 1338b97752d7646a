r"""Measures the cost of `EarlyBird.on_epoch_end` (target: <= 10 ms for VGG-16).

    python -m binaries.bench_early_bird                    # VGG-16, CIFAR, ratios .3 .5 .7
    python -m binaries.bench_early_bird --model=preresnet101 --calls=100

Builds the model from the zoo (width 1.0, 32x32x3, 10 classes), gives its BN layers
random gammas before every call (untimed, so each call draws new masks and fills the
window), and prints the median / p90 / min wall time of one `on_epoch_end` in ms, its
median process CPU time (robust to other processes' load) and the wall time of reading
the gammas alone. Runs in about 10 s on a CPU.
"""
import time

import numpy as np
from absl import flags

from binaries import cli

_MODEL = flags.DEFINE_string("model", "vgg16", "eb_tf.models name.")
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier of the model.", lower_bound=0.01)
_RATIOS = flags.DEFINE_list("ratios", ["0.3", "0.5", "0.7"], "Pruning ratios tracked.")
_CALLS = flags.DEFINE_integer("calls", 100, "Timed on_epoch_end calls.", lower_bound=50)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed calls first.", lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random gammas.")


def bench(model, ratios, calls, warmup, seed=0):
    """{"median_ms", "p90_ms", "min_ms", "cpu_median_ms", "gammas_ms", "channels", "bn_layers"}."""
    import eb_tf  # late: --help stays fast
    from eb_tf.sparsity import batchnorm
    refs = batchnorm.bn_layers(model)
    rng = np.random.default_rng(seed)
    eb = eb_tf.EarlyBird(ratios=ratios, stop_training=False)
    eb.set_model(model)
    eb.on_train_begin()
    times, cpu, reads = [], [], []
    for i in range(warmup + calls):
        for ref in refs:  # new gammas each "epoch" (untimed)
            ref.gamma.assign(rng.normal(size=ref.gamma.shape).astype(np.float32))
        start, start_cpu = time.perf_counter(), time.process_time()
        eb.on_epoch_end(i, {})
        mid, mid_cpu = time.perf_counter(), time.process_time()
        batchnorm.gammas(model)
        end = time.perf_counter()
        if i >= warmup:
            times.append(mid - start)
            cpu.append(mid_cpu - start_cpu)
            reads.append(end - mid)
    ms = 1e3 * np.array(times)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()), "cpu_median_ms": 1e3 * float(np.median(cpu)),
            "gammas_ms": 1e3 * float(np.median(reads)),
            "channels": int(sum(r.layer.gamma.shape[0] for r in refs)),
            "bn_layers": len(refs)}


@cli.main
def main():
    import eb_tf  # after flag parsing: --help stays fast
    model = eb_tf.models.build(_MODEL.value, 10, (32, 32, 3), width=_WIDTH.value)
    ratios = tuple(float(r) for r in _RATIOS.value)
    res = bench(model, ratios, _CALLS.value, _WARMUP.value, _SEED.value)
    print(f"{_MODEL.value} width {_WIDTH.value:g}: {res['bn_layers']} BN layers, "
          f"{res['channels']} channels, ratios {ratios}, {_CALLS.value} calls")
    print(f"EarlyBird.on_epoch_end: median {res['median_ms']:.3f} ms, p90 "
          f"{res['p90_ms']:.3f} ms, min {res['min_ms']:.3f} ms wall; median "
          f"{res['cpu_median_ms']:.3f} ms CPU (reading gammas alone: {res['gammas_ms']:.3f} ms)")


def run():
    """`python -m binaries.bench_early_bird` as a function."""
    cli.run(main)


if __name__ == "__main__":
    run()
