"""ament_flake8 over the package, tests and benches (colcon test runs the same check on a robot PC)."""

from pathlib import Path

import pytest
from ament_flake8.main import main_with_errors

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=["--config", str(REPO / ".flake8"), str(REPO / "retain_ros"),
                                        str(REPO / "test"), str(REPO / "bench"), str(REPO / "launch")])
    assert rc == 0, f"Found {len(errors)} code style errors / warnings:\n" + "\n".join(errors)
