"""The rooms of the house, checked by reading the imports (`python -m pytest test/test_package_layout.py`).

Only retain_ros/ros/ (and the live clients: evaluate/'s live replay, the demo's session) may import rclpy or ROS
messages, and every module there does (the thin ROS layer: plain logic lives in control/, serving/, sim/ and demo/);
merge/ knows no model or ROS; control/ loads without torch or rclpy; no import cycles, neither between the packages
(rooms) nor between modules. (test_dependencies.py checks that package.xml declares what the code imports.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "retain_ros"
ROS_MODULES = ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "std_srvs", "diagnostic_msgs", "rcl_interfaces",
               "launch", "launch_ros", "builtin_interfaces", "cv_bridge", "retain_ros_msgs", "rosgraph_msgs",
               "lifecycle_msgs", "controller_manager_msgs", "franka_msgs", "control_msgs")


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


# DESIGN.md: besides ros/, only the ROS clients that drive running nodes may use rclpy: evaluate/'s live replay (bag ->
# live topics -> bag) and the demo's live session.
LIVE_CLIENTS = (PACKAGE / "evaluate" / "live_replay.py", PACKAGE / "demo" / "session.py")


@pytest.mark.parametrize("path", [p for p in python_files()
                                  if "ros" not in p.relative_to(PACKAGE).parts[:1] and p not in LIVE_CLIENTS],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_ros_room_imports_ros(path):
    offending = {m for m in imported_modules(path) if m.split(".")[0] in ROS_MODULES}
    assert not offending, f"{path} imports {offending}; ROS code belongs in retain_ros/ros/"


@pytest.mark.parametrize("path", [p for p in python_files("ros") if p.name != "__init__.py"], ids=lambda p: p.name)
def test_the_ros_room_is_a_thin_ros_layer(path):
    ros = {m for m in imported_modules(path) if m.split(".")[0] in ROS_MODULES}
    assert ros, f"{path} imports nothing of ROS: plain logic belongs in control/, serving/, sim/ or demo/"


@pytest.mark.parametrize("path", python_files("merge"), ids=lambda p: p.name)
def test_merge_engine_knows_no_model_classes(path):
    offending = {m for m in imported_modules(path)
                 if m.startswith(("retain_ros.policy", "retain_ros.ros", "retain_ros.sim", "retain_ros.train",
                                  "lerobot", "transformers"))}
    assert not offending, f"{path} imports {offending}; merge/ works on tensors and files only"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Modules `path` imports when it runs (function-local imports included, `if TYPE_CHECKING:` blocks not)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return names


def room(module: str) -> str:
    """The package a module lives in ('core' for the top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "core"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in python_files()}
    return {m: {i for i in runtime_imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_import_cycle_between_packages():
    rooms: dict[str, set[str]] = {}
    for module, imports in import_graph().items():
        rooms.setdefault(room(module), set()).update(room(i) for i in imports if room(i) != room(module))
    cycle = find_cycle(rooms)
    assert cycle is None, f"packages import each other: {' -> '.join(cycle)}; move the shared part down a level"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_control_room_loads_without_torch_or_rclpy():
    """sim.launch.py imports the parameter table in `ros2 launch`'s Python, where torch may not be installed; the
    node's plain logic (control loop, executor, recipes) must stay free of both."""
    import subprocess
    import sys

    modules = [module_name(p) for p in python_files("control")] + ["retain_ros.serving.recipes"]
    code = (f"import sys, {', '.join(modules)}; "
            "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
