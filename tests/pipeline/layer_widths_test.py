"""layer_widths: per-space width multiples from a per-layer latency table."""
import itertools
import json
import os
import time

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, keras3
from eb_tf.pipeline import layer_latency, layer_widths, step_timing, widths
from eb_tf.pruning import bn_kernel
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning import rounding, testing
from tests import pruning_testlib

DEVICE = "cpu:test [avx2] x2"


def _chain(k=keras, widths_=(13, 21, 11)):
    inp = k.Input((8, 8, 3))
    x = inp
    for i, w in enumerate(widths_):
        x = k.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = k.layers.ReLU()(k.layers.BatchNormalization(name=f"bn{i}")(x))
    model = k.Model(inp, k.layers.Dense(4, name="fc")(k.layers.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, seed=3)
    return model, eb_tf.channel_masks(model, 0.6)


def _rounded(model, masks, candidates=(1, 8, 16)):
    return {m: rounding.round_masks(model, masks, "none" if m == 1 else m) for m in candidates}


def _space_widths(model, masks):
    return list(rounding.space_widths(channel_plan.analyze(model, masks)).values())


def test_compose_gives_each_space_the_widths_of_its_candidate():
    model, masks = _chain()
    rounded = _rounded(model, masks)
    per = {m: _space_widths(model, r) for m, r in rounded.items()}
    n = len(layer_widths.spaces(model, masks))
    for assignment in itertools.product(sorted(rounded), repeat=n):
        composed = layer_widths.compose(model, rounded, list(assignment))
        got = _space_widths(model, composed)
        assert got == [per[m][i] for i, m in enumerate(assignment)], assignment
        assert all((composed[k] | ~masks[k]).all() for k in masks)    # never fewer
    for m, r in rounded.items():                   # one candidate everywhere: its masks
        same = layer_widths.compose(model, rounded, [m] * n)
        assert all(np.array_equal(same[k], r[k]) for k in masks)
    with pytest.raises(ValueError, match=r"compose: 2 widths for 4 channel spaces"):
        layer_widths.compose(model, rounded, [1, 8])


def _fake_times(monkeypatch, cost, bn_free=False, unfused_cost=None):
    """Fake layer times `cost(name, cin, cout)` (0 for the BNs with `bn_free`); a BN's
    unfused kernel costs `unfused_cost(name, width)` (default: as fused)."""
    calls = []

    def fake(op, cin, cout, batch, policy, unfused=False):
        calls.append((op.layer.name, op.kind, cin, cout, unfused))
        if unfused and unfused_cost is not None:
            return float(unfused_cost(op.layer.name, cin))
        return 0.0 if bn_free and op.kind != "producer" else float(cost(op.layer.name, cin,
                                                                         cout))
    monkeypatch.setattr(layer_latency, "time_layer", fake)
    return calls


def _brute_force(model, rounded, cost):
    """Minimum summed cost over every assignment, by building each composed ticket."""
    n, best = len(layer_widths.spaces(model, rounded[1])), None
    for assignment in itertools.product(sorted(rounded), repeat=n):
        plan = channel_plan.analyze(model, layer_widths.compose(model, rounded,
                                                                list(assignment)))
        total = 0.0
        for op, h in zip(plan.graph.ops, plan.handlers):
            if h.kind == "producer":
                total += cost(op.layer.name, int(plan.p_in[(op.index, 0)].size),
                              int(plan.phys[op.outputs[0]].size))
        best = total if best is None else min(best, total)
    return best


def test_a_separable_table_gives_the_optimum_and_a_coupled_one_a_local_optimum(
        tmp_path, monkeypatch):
    model, masks = _chain()
    rounded = _rounded(model, masks)
    # Separable: each layer's time depends on its output width only, odd widths slow.
    separable = lambda name, cin, cout: cout * (1.0 if cout % 8 == 0 else 2.5)
    _fake_times(monkeypatch, separable, bn_free=True)
    choice = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path / "a"),
                                              DEVICE)
    assert choice.predicted_ms == pytest.approx(_brute_force(model, rounded, separable))
    assert choice.predicted_ms <= min(choice.uniform_ms.values())
    # Coupled (input x output), the cost of a conv: no single space can gain GAIN.
    coupled = lambda name, cin, cout: cin * cout * (1.0 if cout % 16 == 0 else 1.7) + \
        (3.0 * cout if cin % 8 else 0.0)
    _fake_times(monkeypatch, coupled, bn_free=True)
    choice = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path / "b"),
                                              DEVICE)
    assert choice.predicted_ms <= min(choice.uniform_ms.values())
    assert choice.predicted_ms >= _brute_force(model, rounded, coupled) - 1e-9
    n = len(choice.assignment)
    for s, m in itertools.product(range(n), sorted(rounded)):
        trial = choice.assignment[:s] + [m] + choice.assignment[s + 1:]
        plan = channel_plan.analyze(model, layer_widths.compose(model, rounded, trial))
        total = sum(coupled(op.layer.name, int(plan.p_in[(op.index, 0)].size),
                            int(plan.phys[op.outputs[0]].size))
                    for op, h in zip(plan.graph.ops, plan.handlers) if h.kind == "producer")
        assert total >= choice.predicted_ms * (1 - layer_widths.GAIN) - 1e-9, (s, m)
    got = _space_widths(model, choice.masks)
    assert got == [_space_widths(model, rounded[m])[i] for i, m in enumerate(choice.assignment)]


def test_the_table_is_cached_per_device_and_a_past_deadline_returns_none(tmp_path,
                                                                        monkeypatch):
    model, masks = _chain()
    rounded = _rounded(model, masks)
    calls = _fake_times(monkeypatch, lambda name, cin, cout: cin + cout)
    first = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path),
                                             DEVICE)
    assert first.measured == len(set(calls)) == len(calls) > 0
    files = os.listdir(tmp_path / "layers")
    table = json.load(open(tmp_path / "layers" / files[0], encoding="utf-8"))
    assert len(files) == 1 and table["device"] == DEVICE and table["batch"] == 8
    calls.clear()
    again = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path),
                                             DEVICE)
    assert (again.measured, calls, again.assignment) == (0, [], first.assignment)
    layer_widths.choose_layer_widths(model, rounded, 8, "mixed_bfloat16", str(tmp_path),
                                     DEVICE)
    assert len(os.listdir(tmp_path / "layers")) == 2              # policy: another table
    assert layer_widths.choose_layer_widths(model, rounded, 16, "float32", str(tmp_path / "c"),
                                            DEVICE, deadline=time.perf_counter() - 1) is None
    with pytest.raises(ValueError, match=r"the exact mask \(candidate 1\) must be among"):
        layer_widths.choose_layer_widths(model, {8: rounded[8]}, 8, "float32", str(tmp_path))


@pytest.mark.parametrize("k", [keras, keras3], ids=["tf_keras", "keras3"])
def test_real_layer_timings_on_both_kerases_and_a_residual_net(tmp_path, k):
    model = pruning_testlib.preact_resnet(k)
    testing.randomize_bn(model, seed=1)
    masks = eb_tf.channel_masks(model, 0.5)
    rounded = _rounded(model, masks, (1, 8))
    choice = layer_widths.choose_layer_widths(model, rounded, 4, "float32", str(tmp_path),
                                              DEVICE)
    assert choice.measured > 0 and choice.predicted_ms > 0
    assert set(choice.assignment) <= {1, 8}
    assert all((choice.masks[key] | ~masks[key]).all() for key in masks)
    x = pruning_testlib.data(model)
    pruning_testlib.assert_exact(eb_tf.apply_masks(model, choice.masks),
                                 eb_tf.prune(model, choice.masks), x)


def test_auto_times_the_per_layer_ticket_and_its_cached_choice_gives_the_same_masks(
        tmp_path, monkeypatch):
    model, masks = _chain(widths_=(32, 21, 11))
    # A table where x16 wins in the first space and the exact width elsewhere, so the
    # per-layer ticket is none of the uniform ones.
    _fake_times(monkeypatch, lambda name, cin, cout:
                {"conv0": 1.0 if cout % 16 == 0 else 9.0}.get(name, float(cout)))
    choice = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                    rounds=2, steps=1, warmup=1)
    assert widths.LAYER in choice.ms
    rounded = _rounded(model, masks, (1, 8, 16, 32))
    assert _space_widths(model, rounded[choice.layer["assignment"][0]])[0][0] % 16 == 0
    assert len(choice.ms[widths.LAYER]) == 2 and choice.flops[widths.LAYER] > 0
    record = choice.as_dict()
    assert record["uniform_multiple"] in widths.CANDIDATES and "layer" in record["median_ms"]
    first = eb_tf.round_masks(model, masks, batch_size=8, cache_dir=str(tmp_path))
    monkeypatch.setattr(step_timing, "time_rounds", lambda *a, **k: pytest.fail("cached"))
    monkeypatch.setattr(layer_latency, "time_layer", lambda *a: pytest.fail("cached"))
    again = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path))
    assert again.cached and again.multiple == choice.multiple and again.ms == choice.ms
    second = eb_tf.round_masks(model, masks, batch_size=8, cache_dir=str(tmp_path))
    assert all(np.array_equal(first[key], second[key]) for key in masks)
    if choice.multiple == widths.LAYER:
        composed = layer_widths.compose(model, rounded, choice.layer["assignment"])
        assert all(np.array_equal(first[key], composed[key]) for key in masks)


def _assignment_cost(model, rounded, assignment, cost):
    """(summed producer cost, true FLOPs) of the composed ticket of `assignment`."""
    composed = layer_widths.compose(model, rounded, list(assignment))
    plan = channel_plan.analyze(model, composed)
    total = sum(cost(op.layer.name, int(plan.p_in[(op.index, 0)].size),
                     int(plan.phys[op.outputs[0]].size))
                for op, h in zip(plan.graph.ops, plan.handlers) if h.kind == "producer")
    return total, eb_tf.count_flops(eb_tf.prune(model, composed)).total


def test_under_a_flops_limit_the_search_stays_within_it(tmp_path, monkeypatch):
    model, masks = _chain()
    rounded = _rounded(model, masks)
    odd_slow = lambda name, cin, cout: cout * (1.0 if cout % 8 == 0 else 2.5)
    _fake_times(monkeypatch, odd_slow, bn_free=True)
    n = len(layer_widths.spaces(model, masks))
    every = {a: _assignment_cost(model, rounded, a, odd_slow)
             for a in itertools.product(sorted(rounded), repeat=n)}
    exact = every[(1,) * n][1]
    free = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path), DEVICE)
    assert free.flops is None and every[tuple(free.assignment)][1] > 1.1 * exact
    for growth in (1.0, 1.1, 1.25, 100.0):
        choice = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path),
                                                  DEVICE, max_flops_growth=growth)
        cost, flops = every[tuple(choice.assignment)]
        assert choice.flops == flops <= growth * exact, growth    # a conv chain: exact estimate
        assert choice.predicted_ms == pytest.approx(cost)
        feasible = [c for c, f in every.values() if f <= growth * exact]
        uniform = [every[(m,) * n] for m in rounded]
        assert min(feasible) <= cost <= min(c for c, f in uniform if f <= growth * exact)
        if growth == 100.0:
            assert choice.assignment == free.assignment
    # 1.25x allows the rounding of one space (1.2x), the best assignment within it
    limited = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path),
                                               DEVICE, max_flops_growth=1.25)
    assert every[tuple(limited.assignment)][0] == min(
        c for c, f in every.values() if f <= 1.25 * exact)
    assert every[tuple(limited.assignment)][0] < every[(1,) * n][0]


def test_a_bn_left_at_an_odd_width_runs_unfused_where_that_is_faster(tmp_path, monkeypatch):
    model, masks = _chain()
    rounded = _rounded(model, masks)
    # BNs: fused 10 ms off multiples of 8 and 1 ms on them, unfused 3 ms at any width.
    bn = lambda name, cin, cout: (1.0 if cin % 8 == 0 else 10.0) if name.startswith("bn") \
        else cin * cout * 1e-3
    calls = _fake_times(monkeypatch, bn, unfused_cost=lambda name, width: 3.0)
    choice = layer_widths.choose_layer_widths(model, rounded, 8, "float32", str(tmp_path),
                                              DEVICE, max_flops_growth=1.0)
    assert choice.assignment == [1] * len(choice.assignment)     # no FLOPs to spend
    kept = {key: int(m.sum()) for key, m in masks.items()}
    assert choice.unfused == sorted(k for k, n in kept.items() if n % 8)
    assert choice.unfused and choice.as_dict()["unfused"] == choice.unfused
    assert any(c[4] for c in calls) and all(c[1] == "bn" for c in calls if c[4])
    ticket = bn_kernel.unfuse(eb_tf.prune(model, choice.masks), choice.unfused)
    unfused = {l.name for l in ticket.layers
               if isinstance(l, bn_kernel.UnfusedBatchNormalization) and l.fused is False}
    assert unfused == set(choice.unfused)
    x = pruning_testlib.data(model)
    pruning_testlib.assert_exact(eb_tf.apply_masks(model, choice.masks), ticket, x)
