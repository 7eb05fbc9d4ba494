"""config/fr3_droid.yaml lists every policy-node parameter with the declared type; launch arguments take the declared
types; the launch files compile."""

from __future__ import annotations

import ast
import importlib.util
import py_compile

import pytest
import yaml
from ros_helpers import CONFIG, REPO

from retain_ros.control.params import BY_NAME, PARAMS, check_change, launch_value, type_problem, typed
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


def _launch_arguments() -> dict[str, str]:
    """policy.launch.py's optional arguments, read from its source (ROS launch is not on PyPI)."""
    tree = ast.parse((REPO / "launch" / "policy.launch.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OPTIONAL")


def test_launch_arguments_take_the_declared_parameter_types():
    arguments = _launch_arguments()
    assert {"base_checkpoint", "checkpoint_root"} <= set(arguments)  # optional: a params file may set them
    given = {"alpha": "1", "speed_scale": "1", "start_paused": "true", "use_sim_time": "false", "device": "cuda",
             "finetuned_checkpoints": "['pi0_cube']", "base_checkpoint": "123", "checkpoint_root": "/data/ckpt",
             "gripper_backend": "none", "policy_backend": "openpi_server",
             "policy_server_uri": "ws://gpu-host:8000"}
    assert set(given) == set(arguments)
    values = {name: launch_value(name, text) for name, text in given.items()}
    assert values == {"alpha": 1.0, "speed_scale": 1.0, "start_paused": True, "use_sim_time": False, "device": "cuda",
                      "finetuned_checkpoints": ["pi0_cube"], "base_checkpoint": "123",
                      "checkpoint_root": "/data/ckpt", "gripper_backend": "none", "policy_backend": "openpi_server",
                      "policy_server_uri": "ws://gpu-host:8000"}
    assert type(values["alpha"]) is float and type(values["speed_scale"]) is float
    assert launch_value("instruction", "yes") == "yes"  # YAML would make it True
    for name, value in values.items():
        if name in BY_NAME:
            assert type_problem(BY_NAME[name], value) is None, name


def test_integers_widen_to_doubles_and_other_wrong_types_are_named():
    assert typed(BY_NAME["position_min"], [-2, -1, -2, -3, -2, 0, -2]) == [-2.0, -1.0, -2.0, -3.0, -2.0, 0.0, -2.0]
    assert typed(BY_NAME["execute_steps"], 8) == 8 and typed(BY_NAME["start_paused"], True) is True
    assert typed(BY_NAME["finetuned_checkpoints"], []) == [""]  # an empty list rclpy can type
    assert launch_value("finetuned_checkpoints", "pi0_cube") == ["pi0_cube"]  # a bare name: a list of one
    assert type_problem(BY_NAME["alpha"], "high") == ("alpha='high' has type string, the parameter's type is double "
                                                      "(default 0.5); fix the params file or the launch argument")
    assert "execute_steps=8.0 has type double, the parameter's type is integer" in type_problem(
        BY_NAME["execute_steps"], 8.0)
    assert "non-empty list of double" in type_problem(BY_NAME["position_min"], [])
    assert "list of string" in type_problem(BY_NAME["camera_names"], ["exterior", 3])
