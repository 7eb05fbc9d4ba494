"""ament_pep257 docstring conventions over the package (as `colcon test` runs them on a robot PC)."""

from pathlib import Path

import pytest
from ament_pep257.main import main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    # Google-style docstrings (Args/Returns/Raises), as the style guide asks; missing docstrings are not errors here.
    rc = main(argv=["--convention", "google", "--add-ignore", "D100", "D101", "D102", "D103", "D104", "D105", "D107",
                    "--", str(REPO / "retain_ros")])
    assert rc == 0, "Found code style errors / warnings"
