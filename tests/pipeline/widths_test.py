"""widths: the hardware-aware width multiple, measured, cached and deterministic."""
import json
import os

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras
from eb_tf.pipeline import step_timing, widths
from eb_tf.pruning import testing

L = keras.layers


def _chain():
    inp = keras.Input((8, 8, 3))
    x = inp
    for i, w in enumerate((13, 21)):
        x = L.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.ReLU()(L.BatchNormalization(name=f"bn{i}")(x))
    model = keras.Model(inp, L.Dense(4, name="fc")(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, seed=3)
    return model, eb_tf.channel_masks(model, 0.6)


def _tables(folder):
    """The whole-ticket tables of a widths cache (the per-layer ones are in layers/)."""
    return [n for n in os.listdir(folder) if n.endswith(".json")]


def test_choose_multiple_measures_each_distinct_ticket_then_reads_the_cache(tmp_path,
                                                                              monkeypatch):
    model, masks = _chain()
    choice = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                    rounds=2, steps=1, warmup=1, per_layer=False)
    # widths: exact (2, 12), x8 (8, 16), x16 (13, 16), x32 (13, 21): four tickets
    assert sorted(choice.ms) == [1, 8, 16, 32]
    assert all(len(v) == 2 and min(v) > 0 for v in choice.ms.values())
    assert choice.flops[1] < choice.flops[8] < choice.flops[32]
    assert not choice.cached and choice.seconds > 0 and choice.policy == "float32"
    assert choice.device.startswith(("cpu:", "gpu:"))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".json")

    def no_timing(*args, **kwargs):
        raise AssertionError("a cached table must not be measured again")
    monkeypatch.setattr(step_timing, "time_rounds", no_timing)
    again = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   per_layer=False)
    assert again.cached and again.multiple == choice.multiple and again.ms == choice.ms
    rounded = widths._chosen_masks(*widths._choose(  # pylint: disable=protected-access
        model, masks, batch_size=8, cache_dir=str(tmp_path), per_layer=False))
    expect = eb_tf.pruning.round_masks(model, masks, "none" if choice.multiple == 1
                                       else choice.multiple)
    assert all(np.array_equal(rounded[k], expect[k]) for k in masks)


def test_the_choice_from_a_table_is_deterministic_and_ties_go_to_fewer_flops(tmp_path):
    model, masks = _chain()
    first = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   rounds=1, steps=1, warmup=1, per_layer=False,
                                   max_flops_growth=None)
    path = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    for table, expect in (({1: [10.0], 8: [5.0], 16: [9.0], 32: [9.0]}, 8),
                          ({1: [10.0, 10.2, 9.9], 8: [10.1, 10.0, 10.3], 16: [20.0] * 3,
                            32: [9.95] * 3}, 1),     # all within 3%: the exact mask
                          ({1: [30.0], 8: [20.0], 16: [12.0], 32: [12.2]}, 16)):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"ms_rounds": {str(k): v for k, v in table.items()}}, f)
        choices = {widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                          per_layer=False, max_flops_growth=None).multiple
                   for _ in range(3)}
        assert choices == {expect}, table
    assert first.multiple in (1, 8, 16, 32)


def test_the_flops_limit_rules_out_inflated_tickets_and_reports_them(tmp_path):
    from eb_tf.pipeline import run_report  # pylint: disable=import-outside-toplevel
    model, masks = _chain()
    first = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   rounds=1, steps=1, warmup=1, per_layer=False)
    assert first.max_flops_growth == widths.MAX_FLOPS_GROWTH == 1.25
    path = os.path.join(tmp_path, _tables(tmp_path)[0])
    record = json.load(open(path, encoding="utf-8"))
    flops = {int(m): v for m, v in record["flops"].items()}
    # exact widths (2, 12): every rounded ticket has over 1.25x its FLOPs
    assert all(flops[m] > 1.25 * flops[1] for m in (8, 16, 32))
    record["ms_rounds"] = {"1": [10.0], "8": [5.0], "16": [9.0], "32": [9.0]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    limited = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                     per_layer=False)
    assert (limited.multiple, limited.over_limit) == (1, [8, 16, 32])
    assert limited.as_dict()["over_limit"] == ["8", "16", "32"]
    assert limited.uniform_multiple == 8      # the device's preference: the next prior
    lines = "\n".join(run_report._width_lines({"width_choice": limited.as_dict()}))
    assert "| 8 (over the limit) | 5.0 |" in lines and "above 1.25x the exact" in lines
    # A looser limit is another table (measured anew); with it x8 is eligible.
    loose = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   rounds=1, steps=1, warmup=1, per_layer=False,
                                   max_flops_growth=100.0)
    assert not loose.cached and loose.over_limit == [] and len(_tables(tmp_path)) == 2
    with pytest.raises(ValueError, match=r"choose_multiple: max_flops_growth must be a number "
                                         r">= 1 .* got 0.5"):
        widths.choose_multiple(model, masks, max_flops_growth=0.5)


def test_policy_and_batch_are_part_of_the_cache_key(tmp_path):
    model, masks = _chain()
    widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path), rounds=1,
                           steps=1, warmup=1, candidates=(1, 8))
    bf16 = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                  policy="mixed_bfloat16", rounds=1, steps=1, warmup=1,
                                  candidates=(1, 8))
    assert not bf16.cached and bf16.policy == "mixed_bfloat16"
    assert len(_tables(tmp_path)) == 2


@pytest.mark.parametrize("value, message", [
    ("fast", r"eb_tf.round_masks: multiple must be 'auto', 'none' or an int >= 1, got"),
    (0, r"got 0"), (2.5, r"got 2.5"), (True, r"got True")])
def test_bad_multiples_are_named(value, message):
    model, masks = _chain()
    with pytest.raises(ValueError, match=message):
        eb_tf.round_masks(model, masks, multiple=value)


def test_none_and_int_need_no_measurement():
    model, masks = _chain()
    assert all(np.array_equal(v, masks[k])
               for k, v in eb_tf.round_masks(model, masks, multiple="none").items())
    eight = eb_tf.round_masks(model, masks, multiple=8)
    assert [int(v.sum()) for v in eight.values()] == [8, 16]


def test_the_draw_records_auto_within_its_budget_and_a_resume_keeps_it(tmp_path, monkeypatch):
    from eb_tf.pipeline import runner, run_report  # pylint: disable=import-outside-toplevel
    from tests.pipeline_testlib import smoke_config  # pylint: disable=import-outside-toplevel
    monkeypatch.setenv("EB_TF_CACHE", str(tmp_path / "cache"))
    cfg = smoke_config(round_multiple="auto")
    # A smoke retrain lasts seconds: 5% of it cannot pay for tracing four tickets. A fresh
    # cache holds no prior, so the draw measures one round, which is cached.
    first = runner.run(cfg, str(tmp_path / "a"), phases=("search", "draw"),
                       print_summary=False)["ticket"]["0.5"]
    choice = first["width_choice"]
    assert choice["source"] == "measured" and 0 < choice["budget_seconds"] < 1.0
    assert {len(v) for v in choice["ms_rounds"].values()} == {1}
    assert first["round_multiple"] == choice["multiple"] in widths.CANDIDATES + (widths.LAYER,)
    assert len(_tables(tmp_path / "cache" / "widths")) == 1
    meta = json.load(open(tmp_path / "a" / "tickets" / "p0.5" / "meta.json", encoding="utf-8"))
    assert "Widths: round_multiple = auto chose x" in "\n".join(run_report._width_lines(meta))
    # A second run on this device then takes that choice as its prior, unmeasured.
    def no_timing(*args, **kwargs):
        raise AssertionError("over budget with a prior: nothing is measured")
    monkeypatch.setattr(step_timing, "time_rounds", lambda *a, **k: None)   # "over budget"
    cfg.seed = 1                                  # another ticket: not the cached table
    second = runner.run(cfg, str(tmp_path / "b"), phases=("search", "draw"),
                        print_summary=False)["ticket"]["0.5"]
    prior = second["width_choice"]
    assert prior["source"] == "prior" and prior["ms_rounds"] == {}
    # the same widths as rounding to the measured multiple (equal candidates kept once)
    assert prior["multiple"] <= choice["multiple"] and str(prior["multiple"]) in prior["flops"]
    meta = json.load(open(tmp_path / "b" / "tickets" / "p0.5" / "meta.json", encoding="utf-8"))
    assert "unmeasured, the latest choice measured" in "\n".join(run_report._width_lines(meta))
    # A resumed run keeps its drawn ticket and measures nothing.
    monkeypatch.setattr(step_timing, "time_rounds", no_timing)
    cfg.seed = 0
    again = runner.run(cfg, str(tmp_path / "a"), phases=("search", "draw"),
                       print_summary=False)["ticket"]["0.5"]
    assert again["width_choice"] == choice


def test_a_budget_shrinks_the_rounds_and_one_too_small_takes_the_prior(tmp_path):
    model, masks = _chain()
    full = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path / "a"),
                                  rounds=4, steps=1, warmup=1)
    assert {len(v) for v in full.ms.values()} == {4}
    assert full.uniform_multiple in widths.CANDIDATES   # a prior: per-layer widths are per model
    # Enough to trace, not for the rounds asked: fewer rounds, still measured and cached.
    traced = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path / "b"),
                                    rounds=10000, steps=1, warmup=1, budget_seconds=8.0)
    assert traced.source == "measured" and traced.budget_seconds == 8.0
    assert 1 <= max(len(v) for v in traced.ms.values()) < 10000 and traced.seconds < 12
    assert len(_tables(tmp_path / "b")) == 1
    # Too small to trace: the prior of folder a (another mask, same device/policy/batch).
    other = {k: v.copy() for k, v in masks.items()}
    other["bn1"][np.flatnonzero(~other["bn1"])[:1]] = True
    prior = widths.choose_multiple(model, other, batch_size=8, cache_dir=str(tmp_path / "a"),
                                   budget_seconds=1e-3, max_flops_growth=None)
    assert (prior.source, prior.ms) == ("prior", {})
    assert prior.multiple <= full.uniform_multiple and prior.multiple in prior.flops
    assert [int(v.sum()) for v in eb_tf.round_masks(model, other, prior.multiple).values()] \
        == [int(v.sum()) for v in eb_tf.round_masks(model, other, full.uniform_multiple).values()]
    assert len(_tables(tmp_path / "a")) == 1                    # a prior is not cached
    assert widths.retrain_budget(10, 4.0, 0.5) == pytest.approx(widths.BUDGET_FRACTION * 20)
    assert widths.retrain_budget(10, None, 0.5) is None


def test_a_prior_over_the_flops_limit_gives_the_exact_mask_with_odd_bns_unfused(tmp_path):
    from eb_tf.pruning import bn_kernel  # pylint: disable=import-outside-toplevel
    model, masks = _chain()
    first = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   rounds=1, steps=1, warmup=1, per_layer=False,
                                   max_flops_growth=None)
    path = os.path.join(tmp_path, _tables(tmp_path)[0])
    record = json.load(open(path, encoding="utf-8"))
    record["ms_rounds"] = {"1": [10.0], "8": [5.0], "16": [9.0], "32": [9.0]}   # prior: x8
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    # Too small a budget to trace: the prior x8 (widths 8, 16) is over 1.25x the exact
    # ticket's FLOPs (widths 2, 12), so the exact mask, its BNs off x8 unfused.
    prior = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   budget_seconds=1e-3)
    assert (prior.source, prior.multiple) == ("prior", 1) and prior.flops[8] > 1.25 * \
        prior.flops[1] == 1.25 * first.flops[1]
    kept = {key: int(m.sum()) for key, m in masks.items()}
    assert prior.unfused == sorted(k for k, n in kept.items() if n % 8) == ["bn0", "bn1"]
    assert prior.as_dict()["unfused"] == prior.unfused
    from eb_tf.pipeline import run_report  # pylint: disable=import-outside-toplevel
    line = run_report._width_lines({"width_choice": prior.as_dict()})[0]
    assert "took x1 unmeasured" in line and "2 BatchNormalizations off that multiple" in line
    ticket = bn_kernel.unfuse(eb_tf.prune(model, masks), prior.unfused)
    assert {l.name for l in ticket.layers
            if isinstance(l, bn_kernel.UnfusedBatchNormalization)} == {"bn0", "bn1"}
    # Without the limit the prior's x8 is taken, aligned: nothing to unfuse.
    loose = widths.choose_multiple(model, masks, batch_size=8, cache_dir=str(tmp_path),
                                   budget_seconds=1e-3, max_flops_growth=None)
    assert (loose.multiple, loose.unfused) == (8, [])


def test_has_bf16_reads_the_device_flags():
    assert widths.has_bf16("cpu:Xeon [avx2 avx512f avx512_bf16] x2")
    assert widths.has_bf16("cpu:Xeon [amx_bf16] x2") and widths.has_bf16("gpu:H100 x1")
    assert not widths.has_bf16("cpu:EPYC [avx2 fma avx512f] x2")
