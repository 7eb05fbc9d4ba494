"""A plain `colcon build` of a workspace holding this repository builds retain_ros and its messages (retain_ros_msgs).

Runs test/workspace/colcon_build_check.sh with this environment standing in for the ROS install (the ROS 2 wheels of
requirements.txt and requirements-msgs.txt) and colcon from .venv-colcon (`make test` makes it from
requirements-colcon.txt), the COLCON environment variable, or PATH. Without colcon the test is skipped and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "test" / "workspace" / "colcon_build_check.sh"
VENV = Path(sys.prefix)


def find_colcon() -> str | None:
    for candidate in (os.environ.get("COLCON"), REPO / ".venv-colcon" / "bin" / "colcon", VENV / "bin" / "colcon"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("colcon")


@pytest.mark.slow
def test_plain_colcon_build_builds_the_node_and_its_messages(tmp_path):
    colcon = find_colcon()
    if colcon is None:
        pytest.skip("colcon workspace check NOT run: no colcon (make colcon-env, or pip install -r "
                    "requirements-colcon.txt, or set COLCON)")
    if not (VENV / "share" / "ament_cmake" / "cmake").is_dir():
        pytest.skip(f"colcon workspace check NOT run: {VENV} has no ament_cmake (pip install -r requirements-msgs.txt)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    env["COLCON"] = colcon
    result = subprocess.run(["bash", str(SCRIPT), str(VENV), str(tmp_path / "ws")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "colcon_build_check: OK" in result.stdout
