"""Every value a user writes (training configs, --set, degradation chains and YAML specs) is
either taken, and then works, or refused in one line naming the key: never a traceback.
Property-based: hypothesis puts arbitrary values (text, NaN, inf, bools, lists, mappings,
negative and huge numbers) where the parsers expect numbers, lists and mappings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vsrdb.data.degrade import load_degradation, parse_chain
from vsrdb.errors import ConfigError, InputError, VsrdbError
from vsrdb.train.config import load_config

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)


def _drawable(spec) -> None:
    """A spec that loads must draw without error, whatever the seed."""
    d = load_degradation(spec, where="data.degrade")
    for seed in range(4):
        d.draw(np.random.default_rng(seed))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["prob", "crf", "codec", "gop", "preset", "bpp"]), value=values,
       clean=st.one_of(st.just(0.1), values))
def test_any_value_in_a_video_step_is_taken_or_refused_in_one_line(key, value, clean):
    spec = {"clean": clean, "steps": [{"kind": "video", key: value}]}
    try:
        _drawable(spec)
    except VsrdbError as e:
        assert "\n" not in str(e) and str(e).startswith("data.degrade")


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["sigma", "grey", "poisson", "prob"]), value=values, steps=st.one_of(st.none(), values))
def test_any_value_in_a_noise_step_or_in_steps_is_taken_or_refused(key, value, steps):
    for spec in ({"steps": [{"kind": "noise", key: value}]}, {"steps": steps}):
        try:
            _drawable(spec)
        except VsrdbError as e:
            assert "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="h2645noisejpgrsczv:=,.-0123456789naif", max_size=24))
def test_any_one_line_chain_is_taken_or_refused(text):
    try:
        d = parse_chain(text)
    except InputError as e:
        assert "\n" not in str(e) and "--degrade" in str(e)
        return
    for seed in range(2):
        d.draw(np.random.default_rng(seed))


@pytest.mark.parametrize("spec, words", [
    ("h264:crf=nan", "crf='nan' is not a finite number"),
    ("h264:crf=inf", "crf='inf' is not a finite number"),
    ("h264:crf=23.5", "must be a whole number"),
    ({"steps": [{"kind": "h264", "crf": [35, 18]}]}, "the range [35, 18] goes down; write [18, 35]"),
    ({"steps": [{"kind": "h264", "crf": []}]}, "an empty list"),
    ({"steps": [{"kind": "h264", "codec": {"h264": 0, "h265": 0}}]}, "every weight is 0"),
    ({"steps": [{"kind": "h264", "codec": {"h264": "often"}}]}, "the weight of 'h264' must be a number"),
    ({"steps": [{"kind": "noise", "prob": "often"}]}, "prob 'often' is a probability"),
    ({"steps": [{"kind": "noise", "prob": -0.5}]}, "prob -0.5 is a probability"),
    ({"steps": [{"kind": "noise", "prob": 0}], "clean": math.nan}, "clean nan is a probability"),
    ({"steps": {"kind": "noise"}}, "steps must be a list of steps"),
    ({"steps": "noise"}, "steps must be a list of steps")])
def test_degradation_values_that_cannot_be_drawn_are_named(spec, words):
    with pytest.raises(VsrdbError) as e:
        _drawable(spec)
    assert words in str(e.value)


def _config(tmp_path, **top) -> object:
    cfg = {"model": "fmanet-tiny", "data": {"root": str(tmp_path), "patch": 12, "batch": 2, "workers": 0},
           "stages": {"netd": {"iterations": 8}}, "run_dir": str(tmp_path / "run")}
    cfg.update(top)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["seed", "gamma", "milestones", "model_args", "loss", "log_every", "data", "stages",
                            "threads", "amp"]), value=values)
@example(key="model_args", value={"\n": None})  # once found: a field name with a newline in the message
def test_any_value_of_a_top_level_config_key_is_taken_or_named(tmp_path, key, value):
    path = _config(tmp_path, **{key: value})
    try:
        load_config(path)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path))


@pytest.mark.parametrize("key, value, words", [
    ("seed", -1, "seed must be 0 or more"),
    ("seed", True, "seed must be int, got True"),
    ("milestones", ["late"], "milestones[0] must be float, got 'late'"),
    ("milestones", 0.7, "milestones must be a list, got 0.7"),
    ("model_args", [1, 2], "model_args must be a mapping, got [1, 2]"),
    ("data", [1], "data must be a mapping")])
def test_config_values_of_the_wrong_type_are_named(tmp_path, key, value, words):
    with pytest.raises(ConfigError) as e:
        load_config(_config(tmp_path, **{key: value}))
    assert words in str(e.value)


def test_workers_beyond_reason_set_into_a_scalar_and_non_utf8_are_named(tmp_path):
    path = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"data\.workers must be 0 to \d+"):
        load_config(path, {"data.workers": 1_000_000})
    with pytest.raises(ConfigError, match=r"--set data\.patch\.size: data\.patch is 12 in .*c\.yaml, not a mapping"):
        load_config(path, {"data.patch.size": 3})
    path.write_bytes(b"model: fmanet-tiny\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not UTF-8 text"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping of settings"):
        load_config(path)


def test_set_values_that_are_not_yaml_or_keys_are_one_line(tmp_path, capsys):
    from vsrdb.cli import main

    path = _config(tmp_path)
    for item, words in (("data.patch=[unclosed", "the value is not valid YAML"),
                        ("data..patch=3", "is not a key"), ("=3", "is not a key")):
        assert main(["train", str(path), "--set", item, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_a_chain_in_a_training_config_is_named_by_its_key_not_by_a_flag(tmp_path):
    path = _config(tmp_path, data={"root": str(tmp_path), "patch": 12, "batch": 2, "workers": 0,
                                   "degrade": "h264:crf=nan"})
    with pytest.raises(VsrdbError) as e:
        load_config(path)
    assert "c.yaml: data.degrade 'h264:crf=nan': crf='nan' is not a finite number" in str(e.value)
    assert "--degrade" not in str(e.value)
