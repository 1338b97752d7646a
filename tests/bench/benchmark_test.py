"""Tests of the benchmark (eb_tf.bench, bench_report, bench_tfmot, step_bench, eb_bench).

One smoke benchmark (configs/bench_cifar10.py:smoke: digits, convnet, T = 4) runs per
module: dense, ns, snip, thinet, eb and tfmot by default (every code path of eb_tf.bench,
thinet's search adopted from the dense run's included; lt and eb_int8 are the pipeline's
own methods, rerouted by `method_config`), all eight methods under `-m slow`. The tests recompute its totals, ratios and predicted costs from the
per-phase records of the method run folders and from the saved models, never from
bench.json's own numbers. The rest are unit tests without training.
"""
import os

import numpy as np
import pytest

import eb_tf
from configs import bench_cifar10
from eb_tf import bench, io_utils
from eb_tf.bench import benchmark
from eb_tf.bench import report as bench_report
from eb_tf.bench import step_time as step_bench
from eb_tf.bench import tfmot_baseline as bench_tfmot
from eb_tf.compat import keras
from eb_tf.pipeline import methods as methods_lib
from tests.pipeline_testlib import check_report_consistency, load, run_binary

T = 4  # the smoke profile's budget


CORE = "dense,ns,snip,thinet,eb,tfmot"  # every code path; lt/eb_int8 only reroute


@pytest.fixture(scope="module", params=[
    pytest.param(CORE, id="core"),
    pytest.param(",".join(bench.METHODS), id="all", marks=pytest.mark.slow)])
def smoke(request, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("bench") / "smoke")
    cfg = bench_cifar10.get_config("smoke")
    cfg.methods = request.param
    return workdir, bench.run_benchmark(cfg, workdir)


def _report(workdir, row):
    return io_utils.read_json(os.path.join(workdir, row["run_dir"], "report.json"))


def _phases(report, method, key):
    """The phase records that produced the row's model, read independently of bench."""
    phases = report["phases"]
    if methods_lib.resolve(method)[0].name == "dense":      # dense and dense_bf16
        return [phases["search"]]
    if method == "tfmot":
        return [phases["train"]]
    return [phases["search"], phases["draw"], phases["retrain"]["by_ratio"][key]]


def _draw_share(workdir, rows, method):
    """The draw's FLOPs (BN re-estimation of the ticket) in units of dense training's."""
    dense = _report(workdir, rows["dense"])["phases"]["search"]["flops"]
    return _report(workdir, rows[method])["phases"]["draw"]["flops"] / dense


def test_smoke_writes_table_plot_and_json_for_every_method(smoke):
    workdir, result = smoke
    methods = result["options"]["methods"]
    assert [r["method"] for r in result["rows"]] == methods
    assert methods == [m for m in bench.METHODS if m in methods] and "tfmot" in methods
    assert io_utils.read_json(os.path.join(workdir, "bench.json")) == result
    with open(os.path.join(workdir, "bench.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(workdir, "bench.md")) as f:
        md = f.read()
    for method in methods:
        assert f"| {method} |" in md
    assert "## EarlyBird overhead" in md and "## Train-step time vs FLOPs" in md
    assert "unstructured zeros do not reduce dense-kernel compute" in md
    for row in result["rows"]:
        assert {"test_acc", "seconds", "flops", "vs_dense", "vs_ns", "predicted_cost",
                "eb_epoch", "params", "model_flops", "tflite_bytes", "latency_ms"} <= set(row)
        assert 0.0 <= row["test_acc"] <= 1.0 and row["latency_ms"] > 0
        report = _report(workdir, row)
        name = {"dense": "dense", "tfmot": "tfmot"}.get(
            methods_lib.resolve(row["method"])[0].name, "0.5")
        tflite = report["export"]["float32"]["models"][name]["path"]
        assert row["tflite_bytes"] == os.path.getsize(os.path.join(workdir, row["run_dir"],
                                                                   tflite))
    micro = result["micro"]
    assert micro["earlybird"]["median_ms"] > 0 and micro["earlybird"]["epoch_s"] > 0
    assert len(micro["step_time"]["rows"]) == 3


def test_smoke_totals_ratios_and_predictions_recomputed_from_run_folders(smoke):
    workdir, result = smoke
    rows = {r["method"]: r for r in result["rows"]}
    recomputed = {}
    for method, row in rows.items():
        report = _report(workdir, row)
        parts = _phases(report, method, "0.5")
        for p in parts:
            if p["epochs"]:
                assert p["flops"] == 3 * p["forward_flops_per_sample"] * p["samples"]
        seconds, flops = sum(p["seconds"] for p in parts), sum(p["flops"] for p in parts)
        assert row["flops"] == flops and row["seconds"] == pytest.approx(seconds, abs=1e-3)
        assert row["epochs"] == sum(p["epochs"] for p in parts)
        recomputed[method] = (seconds, flops)
    for method, row in rows.items():
        bf16 = list(row["phases"].values())[-1]["precision"] == "bf16"   # its own precision
        for base, key in (("dense", "vs_dense"), ("ns", "vs_ns")):
            base = f"{base}_bf16" if bf16 and f"{base}_bf16" in rows else base
            assert row[key]["seconds"] == pytest.approx(recomputed[method][0] / recomputed[base][0])
            assert row[key]["flops"] == pytest.approx(recomputed[method][1] / recomputed[base][1])
    # Epoch budgets of the pipeline's definitions.
    assert rows["dense"]["epochs"] == T and rows["tfmot"]["epochs"] == T
    assert all(rows[m]["epochs"] == 2 * T for m in ("ns", "lt") if m in rows)
    for method in [m for m in ("eb", "eb_int8") if m in rows]:
        report = _report(workdir, rows[method])
        t = report["eb"]["0.5"]["epoch"]
        assert rows[method]["eb_epoch"] == t and rows[method]["epochs"] == T
        dense_flops = report["phases"]["search"]["forward_flops_per_sample"]
        r = report["ticket"]["0.5"]["flops"] / dense_flops
        assert rows[method]["predicted_cost"] == pytest.approx((t + r * (T - t)) / T)
        # With a constant number of samples per epoch the measured FLOPs ratio is the
        # predicted one plus the draw's BN re-estimation (forward passes, counted exactly):
        # the FLOPs model and the accounting agree.
        assert rows[method]["vs_dense"]["flops"] == pytest.approx(
            (t + r * (T - t)) / T + _draw_share(workdir, rows, method))
    # snip: T ticket epochs from the initialisation; thinet: the dense run's T epochs (its
    # search record, adopted) + T; both + their scoring passes, recomputed from the tickets
    dense_search = _report(workdir, rows["dense"])["phases"]["search"]
    for method, search_epochs in (("snip", 0), ("thinet", T)):
        report = _report(workdir, rows[method])
        ticket = report["ticket"]["0.5"]
        r = ticket["flops"] / dense_search["forward_flops_per_sample"]
        s = ticket["scoring"]["flops"] / dense_search["flops"]
        assert rows[method]["epochs"] == search_epochs + T
        assert rows[method]["predicted_cost"] == pytest.approx(search_epochs / T + r + s)
        assert rows[method]["vs_dense"]["flops"] == pytest.approx(
            search_epochs / T + r + _draw_share(workdir, rows, method))
    adopted = _report(workdir, rows["thinet"])["phases"]["search"]
    assert adopted["adopted_from"] == os.path.join("..", "dense")
    assert adopted["seconds"] == dense_search["seconds"]      # trained once, counted here too
    r_ns = rows["ns"]["model_flops"] / rows["dense"]["model_flops"]
    assert rows["ns"]["predicted_cost"] == pytest.approx(1 + r_ns)
    assert rows["ns"]["vs_dense"]["flops"] == pytest.approx(
        1 + r_ns + _draw_share(workdir, rows, "ns"))
    assert rows["tfmot"]["predicted_cost"] == 1.0 and rows["tfmot"]["vs_dense"]["flops"] == 1.0


def test_smoke_phase_overheads_recomputed_from_run_folders_and_the_micro_benchmark(smoke):
    workdir, result = smoke
    rows = {r["method"]: r for r in result["rows"]}
    bare = {n: r["ms_per_step"] for n, r in result["micro"]["step_time"]["rows"].items()}
    seen = set()
    for o in result["overhead"]:
        report = _report(workdir, rows[o["method"]])
        phase = report["phases"][o["phase"]]
        phase = phase["by_ratio"]["0.5"] if "by_ratio" in phase else phase
        timing = phase["timing"]
        assert o["timing"] == timing and o["seconds"] == phase["seconds"]
        assert timing["steps"] == o["steps"] and o["steps"] % phase["epochs"] == 0
        model = "pruned p=0.5" if o["phase"] == "retrain" else "dense"
        assert o["bare_ms"] == bare[model]
        busy = phase["seconds"] - timing["validation"]
        assert o["overhead_seconds"] == pytest.approx(busy - o["steps"] * bare[model] / 1e3,
                                                      abs=1e-3)
        assert o["validation_fraction"] == pytest.approx(timing["validation"] / phase["seconds"])
        seen.add((o["method"], o["phase"]))
    assert {("dense", "search"), ("eb", "search"), ("eb", "retrain")} <= seen
    assert ("ns", "retrain") not in seen          # the micro-benchmark timed eb's ticket only
    with open(os.path.join(workdir, "bench.md")) as f:
        assert "## Phase overhead" in f.read()


def test_smoke_models_match_their_reported_params_and_flops(smoke):
    workdir, result = smoke
    rows = {r["method"]: r for r in result["rows"]}
    for method in ("dense", "ns", "snip", "thinet", "eb"):
        run = os.path.join(workdir, method)
        check_report_consistency(run, io_utils.read_json(os.path.join(run, "report.json")))
    eb_ticket = _report(workdir, rows["eb"])["ticket"]["0.5"]
    assert rows["eb"]["params"] == eb_ticket["params"]
    # tfmot: dense shapes and FLOPs, nonzero weights cut to the eb ticket's count (tfmot
    # rounds each layer's pruned count, so the match is within a few weights per layer).
    tfmot_dir = os.path.join(workdir, rows["tfmot"]["run_dir"])
    model = load(os.path.join(tfmot_dir, "train", "final.keras"))
    assert eb_tf.count_flops(model).total == rows["dense"]["model_flops"] == \
        rows["tfmot"]["model_flops"]
    nonzero = sum(int(np.count_nonzero(w)) for w in model.get_weights())
    assert rows["tfmot"]["nonzero_params"] == nonzero
    assert abs(nonzero - eb_ticket["params"]) <= len(model.layers)
    assert 0.0 < rows["tfmot"]["sparsity"] < 1.0


def test_binary_resumes_the_finished_benchmark_and_prints_its_table(smoke):
    workdir, result = smoke
    proc = run_binary("eb_bench", "--config=configs/bench_cifar10.py:smoke",
                      f"--workdir={workdir}",
                      f"--config.methods={','.join(result['options']['methods'])}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# EB Train benchmark: convnet width 0.25 on digits" in proc.stdout
    again = io_utils.read_json(os.path.join(workdir, "bench.json"))
    assert again["rows"] == result["rows"]      # read back: nothing was trained again


def test_predicted_cost_hand_numbers():
    assert bench_report.predicted_cost("eb", 160, 0.4, eb_epoch=16) == pytest.approx(0.46)
    assert bench_report.predicted_cost("eb_int8", 20, 0.5, eb_epoch=14) == pytest.approx(0.85)
    assert bench_report.predicted_cost("ns", 160, 0.4) == pytest.approx(1.4)
    assert bench_report.predicted_cost("lt", 160, 0.4) == pytest.approx(1.4)
    assert bench_report.predicted_cost("lt", 160, 0.4, rewind_epoch=10) == pytest.approx(1.375)
    assert bench_report.predicted_cost("dense", 160, 1.0) == 1.0
    assert bench_report.predicted_cost("tfmot", 160, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"eb_epoch=None must be in \[0, 160\]"):
        bench_report.predicted_cost("eb", 160, 0.4)
    with pytest.raises(ValueError, match=r"flops_ratio=1.5 must be in \(0, 1\]"):
        bench_report.predicted_cost("ns", 160, 1.5)
    with pytest.raises(ValueError, match="method='slim' must be one of"):
        bench_report.predicted_cost("slim", 160, 0.5)


def test_options_and_method_configs():
    values, options = bench.split_config(bench_cifar10.get_config("smoke"))
    assert options.methods == bench.METHODS and "methods" not in values
    reordered = bench.BenchOptions(methods="tfmot, eb,dense")
    assert reordered.methods == ("dense", "eb", "tfmot")
    int8 = bench.method_config(values, "eb_int8")
    assert (int8.method, int8.search_precision, int8.export) == ("eb", "int8", "float32")
    assert bench.method_config(values, "tfmot").method == "dense"
    with pytest.raises(ValueError, match="config.methods='dense,slim' is invalid"):
        bench.BenchOptions(methods="dense,slim")
    with pytest.raises(ValueError, match="tfmot prunes to the eb ticket's parameter count"):
        bench.BenchOptions(methods="dense,tfmot")
    with pytest.raises(ValueError, match=r"config.tfmot_end_fraction=0 is invalid"):
        bench.BenchOptions(tfmot_end_fraction=0)
    with pytest.raises(ValueError, match="config argument 'huge' is not a profile"):
        bench_cifar10.get_config("huge")
    small = bench_cifar10.get_config("small")
    assert (small.width, small.epochs, small.ratios) == (0.25, 20, (0.5,))
    if bench_cifar10.shared_cifar10_script() or os.path.exists(bench_cifar10.cifar10_npz()):
        # the shared data beside the project, or already decoded in the cache
        assert (small.model, small.dataset) == ("vgg16", f"npz:{bench_cifar10.cifar10_npz()}")
    else:                                       # neither: the embedded digits
        assert (small.model, small.dataset) == ("convnet", "digits")
    assert small.methods == bench_cifar10.SMALL_METHODS
    paper = bench_cifar10.get_config("paper")
    assert (paper.width, paper.epochs, paper.batch_size, paper.train_subset, paper.ratios,
            paper.eval_batches, paper.methods, paper.lr, paper.window) == (
                0.25, 60, 256, 0, (0.5,), 0, "dense,ns,eb", 0.1, 5)
    assert bench.split_config(bench_cifar10.get_config("paper_smoke"))[1].methods == (
        "dense", "ns", "eb")
    variants = {t: bench.method_config(values, t) for t in
                ("eb_reinit", "eb_lf", "eb_ll", "dense_bf16", "ns_bf16")}
    assert variants["eb_reinit"].retrain == "reinit"
    assert (variants["eb_lf"].search_precision, variants["eb_lf"].retrain_precision) == (
        "bf16", "fp32")
    assert (variants["eb_ll"].search_precision, variants["eb_ll"].retrain_precision) == (
        "bf16", "bf16")
    assert (variants["dense_bf16"].method, variants["dense_bf16"].search_precision) == (
        "dense", "bf16")
    assert (variants["ns_bf16"].method, variants["ns_bf16"].retrain_precision) == ("ns", "bf16")


def test_paper_smoke_profile_end_to_end_recomputed_from_run_folders(tmp_path):
    workdir = str(tmp_path / "paper_smoke")
    result = bench.run_benchmark(bench_cifar10.get_config("paper_smoke"), workdir)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["dense", "ns", "eb"]
    assert result["seeds"] == [0] and result["versions"]["tensorflow"]
    assert result["machine"]["device"].startswith(("cpu:", "gpu:"))
    for method, row in rows.items():
        parts = _phases(_report(workdir, row), method, "0.5")
        assert row["seconds"] == pytest.approx(sum(p["seconds"] for p in parts), abs=1e-3)
        assert row["flops"] == sum(p["flops"] for p in parts)
        assert row["vs_dense"]["seconds"] == pytest.approx(
            row["seconds"] / rows["dense"]["seconds"])
    eb_report = _report(workdir, rows["eb"])
    assert rows["eb"]["t_over_T"] == eb_report["eb"]["0.5"]["epoch"] / T
    assert rows["dense"]["t_over_T"] is None and rows["ns"]["t_over_T"] is None
    assert {(o["method"], o["phase"]) for o in result["overhead"]} >= {
        ("dense", "search"), ("eb", "retrain")}
    with open(os.path.join(workdir, "bench.md")) as f:
        md = f.read()
    assert "| t/T |" in md and f"Machine: {result['machine']['device']}" in md


def test_seeds_run_one_benchmark_each_and_rows_are_their_means(tmp_path):
    cfg = bench_cifar10.get_config("smoke")
    cfg.methods, cfg.seeds = "dense,eb", "0,1"
    result = bench.run_benchmark(cfg, str(tmp_path))
    per_seed = [io_utils.read_json(str(tmp_path / f"seed{s}" / "bench.json")) for s in (0, 1)]
    assert result["seeds"] == [0, 1] and [p["seed"] for p in result["per_seed"]] == [0, 1]
    assert [r["method"] for r in result["rows"]] == ["dense", "eb"]
    for i, row in enumerate(result["rows"]):
        values = [b["rows"][i] for b in per_seed]
        for name in ("test_acc", "seconds", "flops", "eb_epoch"):
            got = [v[name] for v in values]
            if None in got:
                assert row[name] is None
                continue
            assert row[name] == pytest.approx(np.mean(got))
            assert row["spread"][name] == pytest.approx(np.std(got, ddof=1))
            assert row["per_seed"][name] == got
        assert row["run_dir"] == [v["run_dir"] for v in values]
    eb = result["rows"][1]
    assert eb["vs_dense"]["seconds"] == pytest.approx(eb["seconds"] / result["rows"][0]["seconds"])
    assert io_utils.read_json(str(tmp_path / "bench.json")) == result
    with open(tmp_path / "bench.md") as f:
        assert "## Over seeds [0, 1]" in f.read()
    with pytest.raises(ValueError, match=r"config.seeds='1,1' is invalid"):
        bench.BenchOptions(seeds="1,1")


def test_ratios_compare_each_row_with_the_dense_run_of_its_precision():
    def row(method, ratio, seconds, precision, predicted=1.0):
        return {"method": method, "ratio": ratio, "seconds": seconds, "flops": 100,
                "predicted_cost": predicted, "phases": {"last": {"precision": precision}}}
    rows = bench_report.add_ratios([
        row("dense", None, 100.0, "fp32"), row("dense_bf16", None, 40.0, "bf16"),
        row("ns", 0.5, 150.0, "fp32"), row("ns_bf16", 0.5, 50.0, "bf16"),
        row("eb", 0.5, 60.0, "fp32", 0.6), row("eb_ll", 0.5, 20.0, "bf16", 0.6),
        row("eb_lf", 0.5, 50.0, "fp32", 0.6)])
    by = {r["method"]: r for r in rows}
    assert by["eb"]["vs_ns"]["seconds"] == pytest.approx(60 / 150)
    assert by["eb_ll"]["vs_ns"]["seconds"] == pytest.approx(20 / 50)
    assert by["dense"]["vs_ns"]["seconds"] == pytest.approx(100 / 150)
    assert by["dense_bf16"]["vs_ns"]["seconds"] == pytest.approx(40 / 50)
    assert by["eb"]["vs_dense_method"] == "dense" and by["eb"]["vs_dense"]["seconds"] == 0.6
    assert by["eb_ll"]["vs_dense_method"] == "dense_bf16"
    assert by["eb_ll"]["vs_dense"]["seconds"] == pytest.approx(0.5)
    assert by["eb_ll"]["time_over_predicted"] == pytest.approx(0.5 / 0.6)
    assert by["eb_lf"]["vs_dense_method"] == "dense"       # its model trained in fp32
    assert by["dense_bf16"]["vs_dense"]["seconds"] == 1.0
    alone = bench_report.add_ratios([row("dense", None, 100.0, "fp32"),
                                     row("eb_ll", 0.5, 20.0, "bf16")])
    assert alone[1]["vs_dense_method"] == "dense"          # no bf16 dense run: the fp32 one


def test_target_sparsity_leaves_the_target_nonzero_count():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    # 6*4 + 4 + 4*2 + 2 = 38 params, 32 of them prunable kernel entries.
    assert bench_tfmot.target_sparsity(model, 22) == pytest.approx(16 / 32)
    with pytest.raises(ValueError, match=r"target_params=5 cannot be reached .* \(6, 38\)"):
        bench_tfmot.target_sparsity(model, 5)


def _tiny(width, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(width, 3, use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])


def test_step_times_rows_ratios_and_untouched_models():
    models = {"wide": _tiny(8, 0), "narrow": _tiny(4, 1)}
    before = [w.copy() for w in models["wide"].get_weights()]
    rows = step_bench.step_times(models, batch=4, steps=2, warmup=1, repeats=3)
    assert list(rows) == ["wide", "narrow"]
    flops = {n: eb_tf.count_flops(m).total for n, m in models.items()}
    assert rows["narrow"]["flops"] == flops["narrow"] == 6 * 6 * 27 * 4 + 4 * 3
    assert rows["narrow"]["flops_ratio"] == flops["narrow"] / flops["wide"]
    assert rows["wide"]["flops_ratio"] == rows["wide"]["time_ratio"] == 1.0
    for row in rows.values():
        assert len(row["ms_rounds"]) == 3 and row["ms_per_step"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, models["wide"].get_weights()))
    assert "| narrow | " in step_bench.format_step_table(rows)
    with pytest.raises(ValueError, match="models is empty"):
        step_bench.step_times({})
    with pytest.raises(ValueError, match="steps=0 must be an int >= 1"):
        step_bench.step_times(models, steps=0)


def test_earlybird_ms_and_realistic_gammas():
    model = _tiny(8, 0)
    step_bench.set_realistic_gammas(model, seed=3)
    gamma = eb_tf.gammas(model)["batch_normalization"]
    assert gamma.shape == (8,) and np.all(gamma >= 0) and not np.allclose(gamma, gamma[0])
    out = step_bench.earlybird_ms(model, ratios=(0.5,), calls=3)
    assert (out["calls"], out["channels"], out["bn_layers"]) == (3, 8, 1)
    assert out["min_ms"] <= out["median_ms"] <= out["p90_ms"]
    no_bn = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no trainable BatchNormalization"):
        step_bench.earlybird_ms(no_bn)


def test_data_prepare_script_runs_once_when_the_npz_is_missing(tmp_path):
    script = tmp_path / "make.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write('x')\n")
    target = tmp_path / "cache" / "data.npz"   # its folder is created first
    values, options = bench.split_config({"dataset": f"npz:{target}",
                                          "data_prepare": str(script)})
    cfg = bench.method_config(values, "dense")
    benchmark.prepare_data(cfg, options)
    benchmark.prepare_data(cfg, options)
    assert target.read_text() == "x"   # written once; the second call found it
