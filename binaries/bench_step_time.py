r"""Train-step time of a dense net vs its p-ticket: exact, hardware-aware ("auto"), x8, x16.

    python -m binaries.bench_step_time                  # VGG-16 width 0.5, 32x32x3, batch 128
    python -m binaries.bench_step_time --model=preresnet56 --width=1 --repeats=5
    python -m binaries.bench_step_time --policies=float32,mixed_bfloat16

Builds the zoo model, gives its BN layers gammas shaped like a trained slimming net's
(`eb_tf.bench.step_time.set_realistic_gammas`: half-normal, shrinking with depth), draws
the p=RATIO ticket (`eb_tf.channel_masks` + `eb_tf.prune`) as it is, with the widths
measured fastest here (`eb_tf.round_masks(multiple="auto")`: a multiple or per-layer
widths, cached in the eb_tf cache) and rounded to each of --multiples; then, per dtype
policy, times SGD training steps of all of them in interleaved rounds on the same random batch and prints, per
model, the FLOPs ratio, the time ratio and their quotient (the efficiency: 1.0 means the
step time falls as much as the FLOPs), with every round's time. The default policies are
float32, plus mixed_bfloat16 where the CPU has AVX512-BF16 or AMX (or on a GPU). The
machine's other load moves the numbers: read the rounds, run it twice. A few minutes
on 2 CPU cores per policy for VGG-16 width 0.5.
"""
from absl import flags

from binaries import cli

_MODEL = flags.DEFINE_string("model", "vgg16", "eb_tf.models name.")
_WIDTH = flags.DEFINE_float("width", 0.5, "Width multiplier.", lower_bound=0.01)
_SHAPE = flags.DEFINE_list("input_shape", ["32", "32", "3"], "Input shape H,W,C.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Output classes.", lower_bound=2)
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.", lower_bound=1)
_RATIO = flags.DEFINE_float("ratio", 0.5, "Pruning ratio p.", lower_bound=0.01,
                            upper_bound=0.99)
_MULTIPLES = flags.DEFINE_list("multiples", ["8", "16"], "Fixed width multiples to compare.")
_POLICIES = flags.DEFINE_list("policies", [], "Keras dtype policies (default: float32, and "
                              "mixed_bfloat16 where the hardware has bf16 units).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved rounds (median reported).",
                                lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, gammas and the batch.")
_PER_LAYER = flags.DEFINE_boolean("per_layer", True, "auto also tries per-layer widths "
                                  "(eb_tf.pipeline.layer_widths).")
_GROWTH = flags.DEFINE_float("max_flops_growth", 1.25, "auto chooses among tickets with at "
                             "most this many times the exact ticket's FLOPs (0: any).",
                             lower_bound=0)


@cli.main
def main():
    import eb_tf  # after flag parsing: --help stays fast
    from eb_tf.bench import step_time
    from eb_tf.compat import keras
    from eb_tf.pipeline import widths
    from eb_tf.pruning import bn_kernel
    from eb_tf.quantization import precision
    keras.utils.set_random_seed(_SEED.value)
    shape = tuple(int(s) for s in _SHAPE.value)
    dense = eb_tf.models.build(_MODEL.value, _CLASSES.value, shape, width=_WIDTH.value)
    step_time.set_realistic_gammas(dense, seed=_SEED.value)
    masks = eb_tf.channel_masks(dense, _RATIO.value)
    device = widths.device_descriptor()
    policies = _POLICIES.value or (["float32", "mixed_bfloat16"] if widths.has_bf16(device)
                                   else ["float32"])
    p = f"p={_RATIO.value:g}"
    growth = _GROWTH.value or None
    if growth is not None and growth < 1:
        raise ValueError(f"--max_flops_growth={growth:g}: must be >= 1, or 0 for no limit")
    for policy in policies:
        choice = widths.choose_multiple(dense, masks, batch_size=_BATCH.value, policy=policy,
                                        per_layer=_PER_LAYER.value, max_flops_growth=growth)
        label = "per-layer" if choice.multiple == widths.LAYER else f"x{choice.multiple}"
        tickets = {f"{p} exact": masks, f"{p} auto ({label})": eb_tf.round_masks(
            dense, masks, multiple="auto", batch_size=_BATCH.value, policy=policy,
            max_flops_growth=growth)
            if _PER_LAYER.value else eb_tf.round_masks(dense, masks, choice.multiple)}
        for m in _MULTIPLES.value:
            tickets[f"{p} x{int(m)}"] = eb_tf.round_masks(dense, masks, multiple=int(m))
        models = {"dense": dense, **{k: eb_tf.prune(dense, v) for k, v in tickets.items()}}
        auto = f"{p} auto ({label})"
        models[auto] = bn_kernel.unfuse(models[auto], choice.unfused)
        if policy != "float32":
            models = {k: precision.with_policy(v, policy) for k, v in models.items()}
        rows = step_time.step_times(models, batch=_BATCH.value, steps=_STEPS.value,
                                     repeats=_REPEATS.value, seed=_SEED.value)
        print(f"\n{_MODEL.value} width {_WIDTH.value:g}, input {shape}, batch {_BATCH.value}, "
              f"{policy}, {device}: median of {_REPEATS.value} interleaved rounds of "
              f"{_STEPS.value} steps (auto: {choice.median_ms} ms, "
              f"{'cached' if choice.cached else f'measured in {choice.seconds:.0f} s'}; "
              f"over the {growth or 0:g}x FLOPs limit: {choice.over_limit or 'none'}; "
              f"unfused BNs: {len(choice.unfused)})")
        print(step_time.format_step_table(rows))


def run():
    """`python -m binaries.bench_step_time` as a function."""
    cli.run(main)


if __name__ == "__main__":
    run()
