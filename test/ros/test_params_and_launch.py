"""config/fr3_droid.yaml lists every policy-node parameter with the declared type; the launch files compile."""

from __future__ import annotations

import importlib.util
import py_compile

import pytest
import yaml
from ros_helpers import CONFIG, REPO

from retain_ros.control.params import BY_NAME, PARAMS, check_change
from retain_ros.ros.policy_params import descriptor


def test_params_file_matches_the_declared_parameters():
    values = yaml.safe_load(CONFIG.read_text())["retain_policy"]["ros__parameters"]
    declared = {p.name for p in PARAMS} | {"autostart"}
    assert set(values) == declared, f"missing {declared - set(values)}, unknown {set(values) - declared}"
    for name, value in values.items():
        if name in BY_NAME:
            assert type(value) is type(BY_NAME[name].default), name
            assert value == BY_NAME[name].default, f"{name}: the file says {value}, the node's default is " \
                                                   f"{BY_NAME[name].default} (offline evaluation uses the defaults)"
            if BY_NAME[name].low is not None:
                assert BY_NAME[name].low <= value <= BY_NAME[name].high, name
    for p in PARAMS:
        assert descriptor(p).description


def test_group_alpha_rule_and_alpha_range():
    assert check_change("alpha_vision", -1.0) is None
    assert check_change("alpha_vision", 0.3) is None
    assert "must be -1" in check_change("alpha_vision", -0.5)
    assert "[0, 1]" in check_change("alpha", 1.5)
    assert "no 'vision' group" in check_change("alpha_vision", 0.3, groups=("all",))


@pytest.mark.parametrize("name", ["policy.launch.py", "sim.launch.py"])
def test_launch_files(name):
    path = REPO / "launch" / name
    if importlib.util.find_spec("launch_ros") is None:  # pip-only machine: no ROS launch; check the syntax
        py_compile.compile(str(path), doraise=True)
        return
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities
