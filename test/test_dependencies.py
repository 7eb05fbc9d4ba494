"""What the code imports at run time is declared: in package.xml by its rosdep key, or in requirements-robot.txt.

A robot PC gets its dependencies from `rosdep install --from-paths src --ignore-src` (package.xml) and
`pip install -r requirements-robot.txt`; an import missing from both fails only there, at run time. The keys below are
rosdep keys of ros/rosdistro (rosdep/base.yaml, rosdep/python.yaml) or ROS package names; `colcon_build_check.sh`
lists them with `rosdep keys` where rosdep has a database.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted((REPO / "retain_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))

# import name -> rosdep key declared in package.xml (exec_depend or depend).
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "matplotlib": "python3-matplotlib",
    **{name: name for name in (
        "rclpy", "ament_index_python", "launch", "launch_ros", "builtin_interfaces", "std_msgs", "std_srvs",
        "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "rcl_interfaces", "rosgraph_msgs",
        "controller_manager_msgs")},
}
# import name -> pip requirement in requirements-robot.txt. No rosdep key for safetensors; python3-torch is the
# distribution's CPU build; python3-rosbags-pip and python3-mujoco-pip exist, but rosdep's pip installer runs
# `sudo pip install`, which Ubuntu 24.04 (PEP 668) refuses unless PIP_BREAK_SYSTEM_PACKAGES=1: one pip file instead.
# msgpack and websockets: openpi's policy-server protocol (retain-serve, policy_backend openpi_server); Ubuntu
# 22.04's python3-websockets (10.x) predates the sync client and server it needs.
PIP_ONLY = {"torch": "torch", "safetensors": "safetensors", "rosbags": "rosbags", "mujoco": "mujoco",
            "msgpack": "msgpack", "websockets": "websockets"}
# Imported only when a feature that needs them is configured, and then named in the error.
OPTIONAL = {
    "lerobot": "the LeRobot backend (pi0 / pi0.5 / SmolVLA): Python >= 3.12, requirements-lerobot.txt",
    "transformers": "the LeRobot backend (comes with lerobot)",
    "orbax": "openpi checkpoints in retain-merge: .venv-openpi (make openpi-env, requirements-openpi.txt)",
    "jax": "openpi checkpoints in retain-merge (comes with orbax-checkpoint)",
    "ml_dtypes": "openpi checkpoints in bfloat16 (comes with JAX)",
    "franka_msgs": "the franka gripper backend: franka_ros2 (a rosdep key on Humble only; built from source on Jazzy)",
}
BUILT_HERE = {"retain_ros", "retain_ros_msgs"}  # this package, and msg/ built by CMakeLists.txt


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> files importing it, leaving out the standard library and relative imports."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def package_xml() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def declared(*tags: str) -> set[str]:
    return {element.text.strip() for tag in tags for element in package_xml().iter(tag)}


def test_every_import_is_classified():
    known = set(ROSDEP_KEYS) | set(PIP_ONLY) | set(OPTIONAL) | BUILT_HERE
    unknown = {name: sorted(files) for name, files in third_party_imports().items() if name not in known}
    assert not unknown, f"imports with no declared source (add its rosdep key to package.xml and ROSDEP_KEYS): " \
                        f"{unknown}"


def test_rosdep_keys_of_the_imports_are_in_package_xml():
    run_time = declared("exec_depend", "depend")
    used = set(third_party_imports())
    missing = {name: ROSDEP_KEYS[name] for name in used & set(ROSDEP_KEYS) if ROSDEP_KEYS[name] not in run_time}
    assert not missing, f"package.xml lacks <exec_depend> (or <depend>) for {missing}"


def test_pip_only_imports_are_in_requirements_robot():
    lines = (REPO / "requirements-robot.txt").read_text().splitlines()
    listed = {re.split(r"[<>=!~\[; ]", line.strip())[0].lower() for line in lines if line.strip()[:1].isalnum()}
    missing = sorted(req for name, req in PIP_ONLY.items() if name in third_party_imports() and req not in listed)
    assert not missing, f"requirements-robot.txt lacks {missing}"


def test_package_xml_builds_the_messages_and_does_not_ask_rosdep_for_them():
    everything = declared("depend", "build_depend", "build_export_depend", "exec_depend", "buildtool_depend",
                          "test_depend")
    assert "retain_ros_msgs" not in everything, "retain_ros_msgs is built by this package, not a rosdep key"
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= declared("buildtool_depend")
    assert "rosidl_default_runtime" in declared("exec_depend", "depend")
    assert package_xml().find("export/build_type").text == "ament_cmake"
    msg_package = ET.parse(REPO / "msg" / "package.xml").getroot()
    for tag in ("depend", "build_depend", "exec_depend", "buildtool_depend"):
        for element in msg_package.iter(tag):
            assert element.text.strip() in everything, f"msg/package.xml's <{tag}>{element.text}</{tag}> is missing"


def test_one_list_of_executables_for_pip_and_colcon():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = {line.split("=")[0].strip()
               for line in config["options.entry_points"]["console_scripts"].splitlines() if line.strip()}
    assert {"policy_node", "sim_robot_node", "retain-merge", "retain-sim", "retain-train", "retain-eval"} <= scripts
    assert "entry_points" not in (REPO / "setup.py").read_text(), "setup.py lists entry points: keep them in setup.cfg"
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"SETUP_CFG\s+\S*setup\.cfg", cmake) and 'SCRIPTS_DESTINATION "lib/${PROJECT_NAME}"' in cmake
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        for executable in re.findall(r"executable=['\"]([\w-]+)['\"]", launch_file.read_text()):
            assert executable in scripts, f"{launch_file.name} starts {executable}, which setup.cfg does not install"
