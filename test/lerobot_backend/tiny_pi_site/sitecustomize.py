"""Start-up hook of the node processes the LeRobot node tests start with this folder on PYTHONPATH.

Python imports `sitecustomize` at start-up, so a stock `python -m retain_ros.ros.policy_node` then builds LeRobot's
pi0 / pi0.5 at the tests' size (`lerobot_helpers.tiny_pi_models`), as the in-process tests do.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lerobot_helpers  # noqa: E402

TINY = lerobot_helpers.tiny_pi_models()  # kept: a collected context manager would undo the patch
TINY.__enter__()  # for the whole process
