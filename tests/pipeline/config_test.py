"""Tests of eb_tf.pipeline.config: paper defaults, validation messages, smoke, hashing, configs/."""
import dataclasses
import importlib

import hypothesis
import hypothesis.strategies as st
import ml_collections
import pytest

from eb_tf.pipeline import config as eb_config

CONFIG_FILES = ("quickstart", "cifar10_small", "vgg16_cifar10", "vgg16_cifar100",
                "preresnet101_cifar10", "preresnet101_cifar100", "resnet18_imagenet",
                "resnet50_imagenet", "vgg16_cifar10_large_lr")


def test_defaults_are_the_paper_recipe():
    cfg = eb_config.from_config_dict(eb_config.default_config())
    assert (cfg.method, cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum) == (
        "eb", 160, 256, 0.1, 0.9)
    assert cfg.lr_milestones == (0.5, 0.75) and cfg.lr_decay == 0.1
    assert (cfg.weight_decay, cfg.l1, cfg.ratios, cfg.threshold, cfg.window) == (
        1e-4, 1e-4, (0.5,), 0.1, 5)
    assert (cfg.scope, cfg.retrain, cfg.retrain_l1) == ("global", "inherit", True)


def test_default_config_round_trips_every_field():
    cd = eb_config.default_config()
    assert set(cd.keys()) == {f.name for f in dataclasses.fields(eb_config.RunConfig)}
    assert eb_config.from_config_dict(cd) == eb_config.RunConfig()
    assert all(f.metadata["help"] for f in dataclasses.fields(eb_config.RunConfig))
    assert "ratios = (0.5,)" in eb_config.describe()


@pytest.mark.parametrize("field, value, expected", [
    ("method", "prune", "config.method='prune' is invalid: must be one of 'eb', 'dense'"),
    ("ratios", (1.5,), "config.ratios=1.5 is invalid: must be in (0, 1)"),
    ("ratios", (0.0,), "config.ratios=0.0 is invalid: must be in (0, 1)"),
    ("ratios", (), "config.ratios=() is invalid: give at least one"),
    ("ratios", (0.5, 0.5), "each ratio at most once"),
    ("epochs", -3, "config.epochs=-3 is invalid: must be in [1, inf]"),
    ("epochs", 2.5, "config.epochs=2.5 is invalid: expected an integer"),
    ("window", 1, "config.window=1 is invalid: must be in [2, 160]"),
    ("threshold", 0.0, "config.threshold=0.0 is invalid: must be in (0, 1]"),
    ("lr", -0.1, "config.lr=-0.1 is invalid: must be in (0, 10]"),
    ("momentum", 1.0, "config.momentum=1.0 is invalid: must be in [0, 1)"),
    ("retrain", "finetune", "config.retrain='finetune' is invalid: must be one of 'inherit'"),
    ("search_precision", "int4", "must be one of 'fp32', 'int8', 'int8_wage', 'bf16'"),
    ("export", "onnx", "config.export='onnx' is invalid"),
    ("scope", "local", "config.scope='local' is invalid"),
    ("lr_milestones", (0.75, 0.5), "fractions of T in increasing order"),
    ("draw_epochs", (0,), "config.draw_epochs=0 is invalid: must be in [1, 160]"),
    ("rewind_epoch", 160, "config.rewind_epoch=160 is invalid: must be in [0, 160)"),
    ("round_multiple", -8, "config.round_multiple=-8 is invalid: must be in [1, inf]"),
    ("round_multiple", "fast", "config.round_multiple='fast' is invalid: must be auto, none "
     "or an int >= 1"),
    ("model", " ", "config.model=' ' is invalid: must be a non-empty name"),
    ("augment", "yes", "config.augment='yes' is invalid: must be True or False"),
])
def test_bad_values_name_field_value_and_range(field, value, expected):
    values = eb_config.default_config().to_dict()
    values[field] = value
    with pytest.raises(ValueError) as info:
        eb_config.from_config_dict(values)
    assert expected in str(info.value)


def test_cross_field_rules():
    with pytest.raises(ValueError, match=r"config.retrain='reinit' is invalid: retrain modes "
                                         r"apply to method='eb' only"):
        eb_config.from_config_dict({"method": "ns", "retrain": "reinit"})
    with pytest.raises(ValueError, match=r"config.warmup_epochs=10 is invalid: must be in "
                                         r"\[0, 10\)"):
        eb_config.from_config_dict({"epochs": 10, "warmup_epochs": 10, "window": 5})


def test_unknown_field_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown config field\(s\) config.ratio \(did you "
                                         r"mean config.ratios\?\)"):
        eb_config.from_config_dict({"ratio": 0.5})


def test_scalars_and_lists_become_tuples():
    cfg = eb_config.from_config_dict({"ratios": 0.3, "draw_epochs": [3, 5]})
    assert cfg.ratios == (0.3,) and cfg.draw_epochs == (3, 5)


def test_smoke_shrinks_to_seconds():
    cfg = eb_config.from_config_dict({"smoke": True, "draw_epochs": (2, 50)})
    assert (cfg.epochs, cfg.window, cfg.train_subset, cfg.batch_size, cfg.eval_batches,
            cfg.width, cfg.draw_epochs) == (4, 2, 256, 32, 2, 0.25, (2,))


def test_hash_ignores_presentation_fields_only():
    base = eb_config.RunConfig()
    h = eb_config.config_hash(base)
    assert len(h) == 12
    assert eb_config.config_hash(dataclasses.replace(base, verbose=0, tensorboard=False)) == h
    assert eb_config.config_hash(dataclasses.replace(base, epochs=159)) != h


@hypothesis.given(st.floats(min_value=1e-6, max_value=1 - 1e-6), st.integers(2, 50))
def test_valid_ratios_and_windows_pass(ratio, window):
    cfg = eb_config.from_config_dict({"ratios": (ratio,), "window": window, "epochs": 50})
    assert cfg.ratios == (ratio,) and cfg.window == window


@hypothesis.given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0)))
def test_ratios_outside_open_unit_interval_fail(ratio):
    with pytest.raises(ValueError, match="config.ratios="):
        eb_config.from_config_dict({"ratios": (ratio,)})


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_is_valid_and_has_a_smoke_variant(name):
    module = importlib.import_module(f"configs.{name}")
    assert module.__doc__.startswith("python ")
    assert "Expected run time" in module.__doc__
    cfg = module.get_config()
    assert isinstance(cfg, ml_collections.ConfigDict)
    full = eb_config.from_config_dict(cfg)
    smoke = eb_config.from_config_dict(module.get_config("smoke"))
    assert smoke.smoke and smoke.epochs <= 4 and full.epochs >= smoke.epochs
    with pytest.raises(ValueError, match="config argument 'fast' is not supported"):
        module.get_config("fast")


def test_large_lr_config_uses_the_preset():
    from configs import vgg16_cifar10_large_lr
    from eb_tf.pipeline import schedules
    cfg = eb_config.from_config_dict(vgg16_cifar10_large_lr.get_config())
    assert (cfg.lr, cfg.warmup_epochs) == (schedules.PRESETS["large_lr"]["lr"],
                                           schedules.PRESETS["large_lr"]["warmup_epochs"])


def test_round_multiple_takes_an_int_or_auto_or_none_in_python_and_from_flags():
    cfg = eb_config.default_config()
    assert eb_config.from_config_dict(cfg).round_multiple == "auto"
    for value, expect in ((16, 16), ("8", 8), ("none", "none"), (0, "none")):
        cfg.round_multiple = value              # an int where the default is a string
        assert eb_config.from_config_dict(cfg).round_multiple == expect
