"""Forward kinematics of the FR3 (numpy only): where the elbow, wrist, flange and fingertips are for joint positions.

The chain is franka_description's FR3 (the description franka_ros2 loads): each joint frame is its parent's shifted
by `xyz` and turned by roll-pitch-yaw `rpy`, then rotated by q about its own z axis. The flange is 0.107 m along
joint 7's axis; `robots/fr3/fr3.urdf.xacro` mounts the Franka Hand there turned by -pi/4 (`rpy_ee`) and puts its
fingertip centre, `fr3_hand_tcp`, 0.1034 m further (`tcp_xyz`). The simulated arm (sim/assets/fr3.xml) uses the same
numbers; test/test_fr3_kinematics.py checks the two against each other in MuJoCo. Positions are in the base frame
(fr3_link0), metres.
"""

from __future__ import annotations

import numpy as np

# (xyz, rpy) of fr3_joint1 .. fr3_joint7 in their parent link's frame
_JOINTS = (
    ((0.0, 0.0, 0.333), (0.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (-np.pi / 2, 0.0, 0.0)),
    ((0.0, -0.316, 0.0), (np.pi / 2, 0.0, 0.0)),
    ((0.0825, 0.0, 0.0), (np.pi / 2, 0.0, 0.0)),
    ((-0.0825, 0.384, 0.0), (-np.pi / 2, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (np.pi / 2, 0.0, 0.0)),
    ((0.088, 0.0, 0.0), (np.pi / 2, 0.0, 0.0)),
)
FLANGE_Z_M = 0.107  # fr3_joint8: link7 -> flange
HAND_TCP_Z_M = 0.1034  # fr3_hand -> fr3_hand_tcp (fingertip centre of the Franka Hand)

# The points `points` returns, in its order: what the workspace checks look at.
POINT_NAMES = ("elbow", "wrist", "flange", "fingertips")
HAND_POINTS = ("flange", "fingertips")


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


_ORIGINS = tuple((np.asarray(xyz), _rpy_matrix(*rpy)) for xyz, rpy in _JOINTS)


def points(q: np.ndarray) -> np.ndarray:
    """Positions (m, base frame) of the elbow (joint 4), wrist (joint 6), flange and fingertip centre.

    Args:
        q: (7,) or (N, 7) joint positions (rad).

    Returns:
        (4, 3) or (N, 4, 3), in `POINT_NAMES` order.
    """
    q = np.asarray(q, dtype=np.float64)
    single = q.ndim == 1
    q = np.atleast_2d(q)
    n = len(q)
    rot = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    pos = np.zeros((n, 3))
    frames = []
    for i, (xyz, turn) in enumerate(_ORIGINS):
        pos = pos + rot @ xyz
        rot = rot @ turn
        c, s = np.cos(q[:, i]), np.sin(q[:, i])
        about_z = np.zeros((n, 3, 3))
        about_z[:, 0, 0], about_z[:, 0, 1], about_z[:, 1, 0], about_z[:, 1, 1], about_z[:, 2, 2] = c, -s, s, c, 1.0
        rot = rot @ about_z
        frames.append(pos)
    axis = rot[:, :, 2]  # joint 7's z axis: the flange and the hand lie along it
    flange = pos + FLANGE_Z_M * axis
    out = np.stack([frames[3], frames[5], flange, flange + HAND_TCP_Z_M * axis], axis=1)
    return out[0] if single else out
