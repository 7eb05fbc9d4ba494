"""The rooms of the house: only retain_ros/ros/ may import rclpy or ROS messages; merge/ knows no model or ROS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "retain_ros"
ROS_MODULES = ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "std_srvs", "diagnostic_msgs", "rcl_interfaces",
               "launch", "launch_ros", "builtin_interfaces", "cv_bridge")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


# DESIGN.md: besides ros/, only evaluate/'s live replay (bag -> live topics -> bag) may use rclpy.
LIVE_REPLAY = PACKAGE / "evaluate" / "live_replay.py"


@pytest.mark.parametrize("path", [p for p in python_files()
                                  if "ros" not in p.relative_to(PACKAGE).parts[:1] and p != LIVE_REPLAY],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_ros_room_imports_ros(path):
    offending = {m for m in imported_modules(path) if m.split(".")[0] in ROS_MODULES}
    assert not offending, f"{path} imports {offending}; ROS code belongs in retain_ros/ros/"


@pytest.mark.parametrize("path", python_files("merge"), ids=lambda p: p.name)
def test_merge_engine_knows_no_model_classes(path):
    offending = {m for m in imported_modules(path)
                 if m.startswith(("retain_ros.policy", "retain_ros.ros", "retain_ros.sim", "retain_ros.train",
                                  "lerobot", "transformers"))}
    assert not offending, f"{path} imports {offending}; merge/ works on tensors and files only"


def test_package_xml_declares_the_ros_dependencies_the_code_imports():
    declared = (PACKAGE.parent / "package.xml").read_text()
    used = {m.split(".")[0] for p in python_files() for m in imported_modules(p)} & set(ROS_MODULES)
    missing = [m for m in used
               if f"<exec_depend>{m}</exec_depend>" not in declared and f"<depend>{m}</depend>" not in declared]
    assert not missing, f"package.xml lacks exec_depend (or depend) for {missing}"
