"""Tests for eb_tf.pipeline.methods: the method records the pipeline and the bench read."""
import pytest

from eb_tf.bench import report as bench_report
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import methods


@pytest.fixture
def toy():
    """A method registered for one test only."""
    record = methods.register(methods.Method(
        "toy_rewind", "network slimming retrained from epoch k", retrain="rewind",
        formula="(T + r (T - k)) / T", variants={"toy_rewind_bf16": {"search_precision": "bf16"}}))
    yield record
    methods.unregister("toy_rewind")


def test_builtin_records_state_what_each_method_does():
    eb, dense, ns, lt = (methods.get(n) for n in ("eb", "dense", "ns", "lt"))
    assert methods.names()[:4] == ("eb", "dense", "ns", "lt")
    assert (eb.stops_at_ticket, eb.retrain, eb.phases) == (True, "config",
                                                           ("search", "draw", "retrain"))
    assert (dense.prunes, dense.search_l1, dense.phases) == (False, False, ("search",))
    assert (ns.stops_at_ticket, ns.retrain, lt.retrain) == (False, "trained", "rewind")
    assert methods.resolve("eb_int8") == (eb, {"search_precision": "int8"})
    assert "eb_int8" in methods.tokens() and methods.tokens().index("eb_int8") == 1


@pytest.mark.parametrize("name, kwargs, expected", [
    ("eb", dict(eb_epoch=16), (16 + 0.4 * 144) / 160),             # inherit: t + r (T - t)
    ("eb", dict(eb_epoch=16, retrain="reinit"), (16 + 0.4 * 160) / 160),
    ("eb", dict(eb_epoch=16, retrain="rewind", rewind_epoch=4), (16 + 0.4 * 156) / 160),
    ("ns", {}, 1.4),                                                 # T + r T
    ("lt", dict(rewind_epoch=10), (160 + 0.4 * 150) / 160),          # T + r (T - k)
    ("dense", {}, 1.0),
])
def test_predicted_cost_follows_the_record(name, kwargs, expected):
    assert methods.get(name).predicted_cost(160, 0.4, **kwargs) == pytest.approx(expected)


def test_predicted_cost_rejects_values_outside_their_range():
    with pytest.raises(ValueError, match=r"eb_epoch=None must be in \[0, 20\] for eb"):
        methods.get("eb").predicted_cost(20, 0.5)
    with pytest.raises(ValueError, match=r"rewind_epoch=20 must be in \[0, 20\)"):
        methods.get("lt").predicted_cost(20, 0.5, rewind_epoch=20)
    with pytest.raises(ValueError, match=r"flops_ratio=0 must be in \(0, 1\]"):
        methods.get("ns").predicted_cost(20, 0)


def test_start_epoch_and_retrain_mode_per_method():
    cfg = eb_config.from_config_dict({"epochs": 20, "rewind_epoch": 3})
    assert methods.get("eb").start_epoch(cfg, 7) == 7                       # inherit
    reinit = eb_config.from_config_dict({"epochs": 20, "retrain": "reinit"})
    assert methods.get("eb").start_epoch(reinit, 7) == 0
    assert methods.get("ns").start_epoch(cfg, 20) == 0                      # T more epochs
    assert methods.get("lt").start_epoch(cfg, 20) == 3                      # from k
    assert methods.get("lt").retrain_mode(reinit) == "rewind"               # its own mode


def test_config_validation_reads_the_record():
    with pytest.raises(ValueError, match=r"config.retrain='rewind' is invalid: retrain modes "
                                         r"apply to method='eb' only; method='ns' retrains"):
        eb_config.from_config_dict({"method": "ns", "retrain": "rewind"})
    with pytest.raises(ValueError, match=r"config.retrain_precision='int8' is invalid: "
                                         r"method='dense' has no retrain"):
        eb_config.from_config_dict({"method": "dense", "retrain_precision": "int8"})
    with pytest.raises(ValueError, match=r"config.method='toy_rewind' is invalid"):
        eb_config.from_config_dict({"method": "toy_rewind"})


def test_a_registered_method_is_a_config_method_and_a_bench_token(toy):
    cfg = eb_config.from_config_dict({"method": "toy_rewind", "rewind_epoch": 1})
    assert methods.get(cfg.method) is toy and toy.start_epoch(cfg, 4) == 1
    assert methods.resolve("toy_rewind_bf16") == (toy, {"search_precision": "bf16"})
    assert bench_report.predicted_cost("toy_rewind", 10, 0.5, rewind_epoch=2) == \
        pytest.approx((10 + 0.5 * 8) / 10)


def test_register_refuses_a_taken_name_unless_replacing(toy):
    with pytest.raises(ValueError, match="method 'toy_rewind' is already registered"):
        methods.register(methods.Method("toy_rewind", "again"))
    with pytest.raises(ValueError, match="method 'eb_int8' is already registered"):
        methods.register(methods.Method("other", "x", variants={"eb_int8": {}}))
    replaced = methods.register(methods.Method("toy_rewind", "again", retrain="trained"),
                                replace=True)
    assert methods.get("toy_rewind") is replaced


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="has space", summary="x"), r"name='has space' must be an identifier"),
    (dict(name="m", summary="x", retrain="finetune"), r"retrain='finetune' must be one of"),
])
def test_bad_records_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        methods.Method(**kwargs)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"method 'slim' is not registered; known: eb, dense"):
        methods.get("slim")
    with pytest.raises(ValueError, match=r"'slim' is neither a method nor a variant; known: "
                                         r"eb, eb_int8"):
        methods.resolve("slim")
