"""The FR3's joint limits, defined once for the simulator, the node's chunk executor and its parameter defaults.

Values from Franka's FR3 datasheet (rad, rad/s); the MJCF joint ranges in sim/assets repeat the position limits and
config/fr3_droid.yaml repeats all three for ROS users. franka_description's joint_limits.yaml (the URDF) is narrower
on some joints (shared reference: franka-and-controllers.md).
"""

from __future__ import annotations

FR3_Q_MIN = (-2.9007, -1.8361, -2.9007, -3.0770, -2.8763, 0.4398, -3.0508)
FR3_Q_MAX = (2.9007, 1.8361, 2.9007, -0.1169, 2.8763, 4.6216, 3.0508)
FR3_DQ_MAX = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)
