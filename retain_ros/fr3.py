"""The FR3's joint limits, defined once for the simulator, the node's chunk executor and its parameter defaults.

Two sets of position limits:
- FR3_Q_MIN / FR3_Q_MAX: what the node commands within (its defaults), franka_description's FR3
  `joint_limits.yaml` (the URDF the controllers load), up to 0.157 rad inside the mechanical range;
- FR3_MECHANICAL_Q_MIN / _MAX: the wider values of Franka's FR3 datasheet, the simulated arm's joint ranges
  (sim/assets/fr3.xml repeats them). A command never goes there.
Velocity (rad/s) and acceleration (rad/s^2) limits are the datasheet's; libfranka lowers the velocity limit near the
position limits (shared reference: franka-and-controllers.md; docs/robot.md cites the sources).
"""

from __future__ import annotations

FR3_Q_MIN = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_Q_MAX = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
FR3_MECHANICAL_Q_MIN = (-2.9007, -1.8361, -2.9007, -3.0770, -2.8763, 0.4398, -3.0508)
FR3_MECHANICAL_Q_MAX = (2.9007, 1.8361, 2.9007, -0.1169, 2.8763, 4.6216, 3.0508)
FR3_DQ_MAX = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)
FR3_DDQ_MAX = (10.0,) * 7
# The home pose (rad): Franka's "ready" pose (0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4) of libfranka's examples and
# franka_ros2's move-to-start, the simulated arm's start and the default of the node's `home_position`.
FR3_HOME_Q = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
