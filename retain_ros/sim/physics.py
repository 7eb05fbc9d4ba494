"""The simulated FR3 tabletop as a MuJoCo model: robot constants, state accessors, object placement.

Plain arrays in, plain arrays out; no tasks, no controllers, no ROS. Units: metres, radians, seconds, newtons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.fr3 import FR3_DQ_MAX, FR3_HOME_Q, FR3_MECHANICAL_Q_MAX, FR3_MECHANICAL_Q_MIN
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SCENE_XML = ASSETS_DIR / "tabletop.xml"

ARM_DOF = len(FR3_ARM_JOINTS)
CONTROL_RATE_HZ = 15.0  # DROID's control rate
# FR3 mechanical limits (retain_ros/fr3.py), rad and rad/s; the MJCF joint ranges repeat Q_MIN / Q_MAX. The node
# commands inside the narrower URDF limits (fr3.FR3_Q_MIN / FR3_Q_MAX).
Q_MIN, Q_MAX = np.array(FR3_MECHANICAL_Q_MIN), np.array(FR3_MECHANICAL_Q_MAX)
DQ_MAX = np.array(FR3_DQ_MAX)
HOME_Q = np.array(FR3_HOME_Q)
GRIPPER_MAX_WIDTH_M = 0.08
TABLE_HEIGHT_M = 0.0
CUBE_HALF_SIZE_M = 0.0225
PLATE_RADIUS_M = 0.075

CUBES = ("cube_red", "cube_green", "cube_blue")
PLATES = ("plate_yellow", "plate_purple")
DISTRACTORS = ("distractor_0", "distractor_1", "distractor_2")
FINGER_PADS = ("fr3_leftfinger_pad", "fr3_rightfinger_pad")
CAMERAS = ("exterior", "wrist")
# Where unused distractors wait: on the floor, out of every camera's view.
_PARKING_XY = {name: (2.0, 1.0 + 0.3 * i) for i, name in enumerate(DISTRACTORS)}
_PARKING_Z = -0.7


@dataclass(frozen=True)
class PhysicsConfig:
    """Physics settings.

    Attributes:
        control_rate_hz: rate of the outer (policy / DROID) loop; one `advance` call lasts one period.
        substeps: physics steps per control period (timestep = 1 / (control_rate_hz * substeps)).
        servo_every: physics steps between joint set-point updates (the trajectory controller's rate).
    """

    control_rate_hz: float = CONTROL_RATE_HZ
    substeps: int = 34
    servo_every: int = 2

    def __post_init__(self) -> None:
        if not 1.0 <= self.control_rate_hz <= 1000.0:
            raise ConfigError(f"control_rate_hz={self.control_rate_hz} is out of range; use 1..1000 Hz (DROID: 15)")
        if self.substeps < 1 or self.servo_every < 1 or self.substeps % self.servo_every:
            raise ConfigError(
                f"substeps={self.substeps} must be a positive multiple of servo_every={self.servo_every}"
            )

    @property
    def control_dt_s(self) -> float:
        """Duration of one control period in seconds."""
        return 1.0 / self.control_rate_hz

    @property
    def timestep_s(self) -> float:
        """Physics timestep of MuJoCo in seconds."""
        return self.control_dt_s / self.substeps


def yaw_of(xmat: np.ndarray) -> float:
    """Return the heading (rotation about world z) of a body's x axis from its 3x3 (or flat 9) rotation matrix."""
    m = np.asarray(xmat).reshape(3, 3)
    return float(np.arctan2(m[1, 0], m[0, 0]))


class TabletopPhysics:
    """MuJoCo model and data of the FR3 tabletop, with named accessors.

    Args:
        config: physics settings.
    """

    def __init__(self, config: PhysicsConfig | None = None) -> None:
        self.config = config or PhysicsConfig()
        self.model = mujoco.MjModel.from_xml_path(str(SCENE_XML))
        self.model.opt.timestep = self.config.timestep_s
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._arm_qadr = np.array([m.joint(j).qposadr[0] for j in FR3_ARM_JOINTS])
        self._arm_vadr = np.array([m.joint(j).dofadr[0] for j in FR3_ARM_JOINTS])
        self._finger_qadr = np.array([m.joint(j).qposadr[0] for j in FR3_FINGER_JOINTS])
        self._finger_vadr = np.array([m.joint(j).dofadr[0] for j in FR3_FINGER_JOINTS])
        self._arm_act = np.array([m.actuator(f"{j}_actuator").id for j in FR3_ARM_JOINTS])
        self._gripper_act = m.actuator("fr3_gripper_actuator").id
        kp = m.actuator_gainprm[self._arm_act, 0]
        # Velocity feed-forward through a position servo: ctrl = q_des + (kv / kp) * dq_des.
        self._ff_gain = -m.actuator_biasprm[self._arm_act, 2] / kp
        self._tcp_site = m.site("tcp").id
        self._pad_geoms = {m.geom(g).id for g in FINGER_PADS}
        self._home_key = m.key("home").id
        self.pristine = _PristineModel.capture(m)

    # ----------------------------------------------------------------------------------------------- episode state
    def reset(self) -> None:
        """Restore the model's appearance, put the arm at `home`, park every object; time restarts at 0."""
        self.pristine.restore(self.model)
        mujoco.mj_resetDataKeyframe(self.model, self.data, self._home_key)
        for name in DISTRACTORS:
            self.set_object_pose(name, _PARKING_XY[name], 0.0, z=_PARKING_Z)
        mujoco.mj_forward(self.model, self.data)

    def set_object_pose(self, name: str, xy: tuple[float, float], yaw: float, z: float | None = None) -> None:
        """Place a free object (cube or distractor) upright on the table, or a plate (mocap) at `xy`.

        Args:
            name: body name from CUBES, PLATES or DISTRACTORS.
            xy: position on the table in metres.
            yaw: rotation about z in radians.
            z: centre height; defaults to resting on the table.
        """
        body = self.model.body(name)
        quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        if body.mocapid[0] >= 0:
            self.data.mocap_pos[body.mocapid[0]] = (xy[0], xy[1], TABLE_HEIGHT_M + 0.001)
            self.data.mocap_quat[body.mocapid[0]] = quat
            return
        geom = self.model.geom(name)
        half_height = geom.size[2] if geom.type[0] == mujoco.mjtGeom.mjGEOM_BOX else geom.size[1]
        z = TABLE_HEIGHT_M + half_height if z is None else z
        joint = self.model.joint(f"{name}_joint")
        qadr, vadr = joint.qposadr[0], joint.dofadr[0]
        self.data.qpos[qadr:qadr + 7] = (xy[0], xy[1], z, *quat)
        self.data.qvel[vadr:vadr + 6] = 0.0

    def forward(self) -> None:
        """Recompute derived quantities (positions, contacts) after editing the state."""
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------------------------------------ actuation
    def set_arm_setpoint(self, q_des: np.ndarray, dq_des: np.ndarray) -> None:
        """Set the joint servo set-point (positions in rad, velocities in rad/s, feed-forward)."""
        self.data.ctrl[self._arm_act] = q_des + self._ff_gain * dq_des

    def set_gripper_width(self, width_m: float) -> None:
        """Command the finger opening (distance between the pads) in metres, clipped to [0, 0.08]."""
        self.data.ctrl[self._gripper_act] = 0.5 * float(np.clip(width_m, 0.0, GRIPPER_MAX_WIDTH_M))

    def step(self, n: int = 1) -> None:
        """Advance the physics by `n` timesteps."""
        mujoco.mj_step(self.model, self.data, nstep=n)

    # ---------------------------------------------------------------------------------------------- measurements
    @property
    def time_s(self) -> float:
        """Simulated time since reset in seconds."""
        return float(self.data.time)

    def arm_positions(self) -> np.ndarray:
        """Measured joint positions of fr3_joint1..7 (rad)."""
        return self.data.qpos[self._arm_qadr].copy()

    def arm_velocities(self) -> np.ndarray:
        """Measured joint velocities of fr3_joint1..7 (rad/s)."""
        return self.data.qvel[self._arm_vadr].copy()

    def arm_efforts(self) -> np.ndarray:
        """Joint torques the servos apply (N m), gravity compensation excluded."""
        return self.data.actuator_force[self._arm_act].copy()

    def finger_positions(self) -> np.ndarray:
        """Positions of the two finger joints (m each; the opening is their sum)."""
        return self.data.qpos[self._finger_qadr].copy()

    def finger_velocities(self) -> np.ndarray:
        """Velocities of the two finger joints (m/s)."""
        return self.data.qvel[self._finger_vadr].copy()

    def gripper_width(self) -> float:
        """Measured finger opening in metres."""
        return float(self.finger_positions().sum())

    def tcp_position(self) -> np.ndarray:
        """Tool centre point (between the finger pads) in world coordinates (m)."""
        return self.data.site_xpos[self._tcp_site].copy()

    def tcp_rotation(self) -> np.ndarray:
        """Tool frame orientation as a 3x3 rotation matrix (z points out of the fingers)."""
        return self.data.site_xmat[self._tcp_site].reshape(3, 3).copy()

    def tcp_jacobian(self) -> np.ndarray:
        """6 x 7 geometric Jacobian (linear; angular) of the tool centre point w.r.t. the arm joints."""
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self._tcp_site)
        return np.vstack([jacp[:, self._arm_vadr], jacr[:, self._arm_vadr]])

    def object_position(self, name: str) -> np.ndarray:
        """World position of a body (m)."""
        return self.data.body(name).xpos.copy()

    def object_yaw(self, name: str) -> float:
        """Heading of a body about world z (rad)."""
        return yaw_of(self.data.body(name).xmat)

    def touching_gripper(self, name: str) -> bool:
        """Whether the geom named `name` touches a finger pad."""
        gid = self.model.geom(name).id
        for c in self.data.contact[: self.data.ncon]:
            if (c.geom1 == gid and c.geom2 in self._pad_geoms) or (c.geom2 == gid and c.geom1 in self._pad_geoms):
                return True
        return False


@dataclass
class _PristineModel:
    """Copies of the model fields that variations change, so every episode starts from the same model."""

    fields: dict[str, np.ndarray]

    _NAMES = ("geom_rgba", "geom_size", "light_diffuse", "light_ambient", "light_dir", "light_pos", "cam_pos",
              "cam_fovy", "body_pos")

    @classmethod
    def capture(cls, model: mujoco.MjModel) -> _PristineModel:
        fields = {name: getattr(model, name).copy() for name in cls._NAMES}
        fields["headlight_ambient"] = model.vis.headlight.ambient.copy()
        fields["headlight_diffuse"] = model.vis.headlight.diffuse.copy()
        return cls(fields)

    def restore(self, model: mujoco.MjModel) -> None:
        for name in self._NAMES:
            getattr(model, name)[:] = self.fields[name]
        model.vis.headlight.ambient[:] = self.fields["headlight_ambient"]
        model.vis.headlight.diffuse[:] = self.fields["headlight_diffuse"]
