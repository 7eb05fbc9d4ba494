"""Parameters of the policy node: one table of names, defaults, descriptions, ranges and read-only flags (no rclpy).

The node declares them (`retain_ros.ros.policy_params`), and offline evaluation reads its defaults from here, so a bag
is replayed with the settings the node would have.

config/fr3_droid.yaml repeats every entry with a comment; `test/ros/test_params_file.py` checks that the two agree.
Group alphas accept -1 ("use `alpha`") or [0, 1]; a FloatingPointRange cannot express {-1} U [0, 1], so the
descriptor says -1..1 and the on-set callback (`check_change`) rejects (-1, 0).
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass

from retain_ros.control.workspace import Workspace
from retain_ros.errors import ConfigError
from retain_ros.paths import resolve_checkpoint
from retain_ros.serving.recipes import check_rules, parse_rules
from retain_ros.policy.lerobot_io import DROID_FR3_IO
from retain_ros.merge.statistics import STATS_CHOICES
from retain_ros.fr3 import FR3_DDQ_MAX, FR3_DQ_MAX, FR3_HOME_Q, FR3_Q_MAX, FR3_Q_MIN
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, Topics

GROUP_ALPHAS = {"alpha_vision": "vision", "alpha_language": "language", "alpha_action": "action"}
CHECKPOINT_PARAMS = ("base_checkpoint", "finetuned_checkpoints", "group_preset", "merge_layout")
MERGE_PARAMS = ("alpha", *GROUP_ALPHAS, "instruction_alphas", *CHECKPOINT_PARAMS)
GRIPPER_BACKENDS = ("franka_gripper", "topic", "none")
EXECUTION_MODES = ("auto", "chunk", "stream")
MERGE_LAYOUTS = ("auto", "resident", "streamed")  # merge.live.LAYOUTS (that module imports torch)
SWAP_MODES = ("auto", "standby", "in_place")  # serving.model_manager.SWAP_MODES (that module imports torch)
POLICY_BACKENDS = ("local", "openpi_server")
STEERING_MODES = ("none", "value")  # steering.selection.STEERING_MODES without 'random' (evaluation only)
STEERING_PARAMS = ("steering", "steering_samples", "steering_checkpoint")
_T = Topics()
_WS = Workspace()


@dataclass(frozen=True)
class Param:
    """One parameter.

    Attributes:
        name: parameter name.
        default: default value (its type is the parameter's type).
        description: what it means, with units.
        read_only: load-time only.
        low: range lower bound (numbers only; None = no range).
        high: range upper bound.
    """

    name: str
    default: object
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None


PARAMS: tuple[Param, ...] = (
    # --- where the model runs ---
    Param("policy_backend", "local", "local (the node loads and merges the checkpoints) or openpi_server (the model "
          "runs on a policy server, retain-serve or openpi's serve_policy, at policy_server_uri; alpha changes are "
          "forwarded to retain-serve; the checkpoint parameters are the server's)", read_only=True),
    Param("policy_server_uri", "ws://localhost:8000", "websocket address of the policy server (openpi_server)",
          read_only=True),
    Param("policy_server_timeout_s", 1.0, "deadline of one answer of the policy server (s); a later answer stops the "
          "arm and the node reconnects", read_only=True, low=0.01, high=60.0),
    # --- model and merge (changing these at run time re-merges off the control thread) ---
    Param("base_checkpoint", "", "pretrained checkpoint (directory with config.json + model.safetensors); relative "
          "paths are taken inside checkpoint_root"),
    Param("finetuned_checkpoints", [""], "finetuned checkpoints of the same architecture (several = sequential "
          "skills); [''] or [] serves the base alone"),
    Param("alpha", 0.5, "RETAIN merge weight: 0 = pretrained, 1 = finetuned", low=0.0, high=1.0),
    Param("alpha_vision", -1.0, "alpha of the vision-encoder group; -1 = use alpha", low=-1.0, high=1.0),
    Param("alpha_language", -1.0, "alpha of the language-backbone group; -1 = use alpha", low=-1.0, high=1.0),
    Param("alpha_action", -1.0, "alpha of the action-expert group; -1 = use alpha", low=-1.0, high=1.0),
    Param("instruction_alphas", [""], "PATTERN=SPEC items, first match wins: an instruction the regular expression "
          "PATTERN matches wholly is served at SPEC (0.9; vision:1,language:0.5,action:0.9; 0.9,0 = one per finetuned "
          "checkpoint); others get alpha / alpha_*"),
    Param("group_preset", "auto", "parameter-group preset (reference, pi0, pi05, smolvla, ... or a YAML path); auto "
          "detects it from the weight names"),
    Param("checkpoint_root", "", "checkpoints are only loaded from inside this directory (empty = anywhere)",
          read_only=True),
    Param("merge_layout", "auto", "where the merge inputs live: resident (on the device: fastest re-merge, the inputs "
          "plus 2 model copies in device memory), streamed (host memory or the page cache, streamed in blocks: 2 model "
          "copies on the device) or auto (CPU: streamed; GPU: resident if it fits the free memory)"),
    Param("swap_mode", "auto", "how an alpha change reaches the serving model: standby (merged into a second copy, "
          "swapped between chunks: control never stops), in_place (one copy: the arm is held, stop sent, while the "
          "merge writes the serving weights, then commanding resumes) or auto (standby where two copies fit the free "
          "memory and the second copy could be made, else in_place)", read_only=True),
    Param("recipe_cache_gb", 1.0, "memory (GB) for merged copies kept besides the serving one, so that switching "
          "back to a recipe is a reference swap; at least one copy (the live merge's) is always made", read_only=True,
          low=0.0, high=1024.0),
    Param("content_hash", False, "hash the serving weights (sha256) when idle and report it in ~/status as "
          "content_sha256; off the critical path, costs a pass over the weights after each swap"),
    Param("dtype", "", "weight precision of LeRobot pi0 / pi0.5 models: '' (the checkpoint's config), bfloat16 "
          "(half the memory of each model copy: two copies of a 3.3B model fit a 24 GB GPU) or float32",
          read_only=True),
    Param("device", "cpu", "torch device of the model and the merge (cpu, cuda, cuda:1)", read_only=True),
    # --- value-guided steering (V-GPS): a value function chooses among sampled chunks ---
    Param("steering", "none", "none (execute the policy's chunk) or value (draw steering_samples chunks in one "
          "batched forward and execute the one the value function at steering_checkpoint scores highest)"),
    Param("steering_samples", 10, "chunks drawn per query when steering (K); the first is the policy's own",
          low=1, high=64),
    Param("steering_checkpoint", "", "value function directory (retain-train value); relative paths are taken inside "
          "checkpoint_root; loads off the control thread and takes over between chunks"),
    Param("seed", 0, "seed of the policy's sampling noise (deterministic output per observation)", read_only=True,
          low=0, high=2**31 - 1),
    # --- LeRobot checkpoints (config.json type pi0 / pi05 / smolvla): the node's streams <-> the policy's features ---
    Param("lerobot_images", list(DROID_FR3_IO.to_params()["images"]), "CAMERA=FEATURE items: which camera_names "
          "entry feeds which policy image feature (observation.images.*)", read_only=True),
    Param("lerobot_state", list(DROID_FR3_IO.state), "observation.state components in order: joint_positions (7), "
          "gripper_position (1, 0 open .. 1 closed), gripper_open (1)", read_only=True),
    Param("lerobot_action", DROID_FR3_IO.action, "what the policy's first 7 outputs are: droid_joint_velocity "
          "(DROID-normalised, pi0 / pi0.5 DROID), joint_velocity (rad/s) or joint_position; output 8 is the gripper",
          read_only=True),
    Param("lerobot_gripper", DROID_FR3_IO.gripper, "the policy's gripper output convention: closed_is_1 (DROID) or "
          "open_is_1", read_only=True),
    Param("lerobot_stats", "", "base and finetuned LeRobot checkpoints with different normalisation statistics: "
          "'' refuses them, finetuned runs every alpha through the finetuned checkpoint's processors (what "
          "lerobot-train saved: alpha 1 is the finetuned policy), base through the base's", read_only=True),
    Param("lerobot_rate_hz", float(DROID_FR3_IO.rate_hz), "rate of the policy's actions (DROID: 15 Hz)",
          read_only=True, low=0.1, high=1000.0),
    # --- execution ---
    Param("start_paused", True, "start without commanding until ~/resume is called (a robot's first run); the "
          "simulator and the demo start armed", read_only=True),
    Param("execution_mode", "auto", "chunk (one trajectory per chunk), stream (one step per control period, "
          "re-anchored on the measured joints, as DROID / openpi) or auto (the backend's choice: stream for "
          "DROID-trained LeRobot checkpoints, chunk otherwise)", read_only=True),
    Param("speed_scale", 0.3, "fraction (0, 1] of the velocity and acceleration limits; paths are kept, time "
          "stretches. Low for first runs, raise once the set-up is trusted", low=0.01, high=1.0),
    Param("min_lead_time_s", 0.05, "the first point of a command is reached no sooner than this after it is sent, so "
          "a small mismatch is not crossed at full speed (s)", low=0.0, high=1.0),
    Param("control_rate_hz", 15.0, "rate of the control loop (stream checks, model swaps, chunk scheduling, streamed "
          "steps), Hz", read_only=True, low=1.0, high=1000.0),
    Param("execute_steps", 8, "actions executed from each chunk before the next one replaces it", low=1, high=1000),
    Param("blend_weight", 0.0, "weight of the previous chunk's remainder where chunks overlap (0 = no blending)",
          low=0.0, high=0.95),
    Param("max_start_jump_rad", 0.5, "a chunk whose first target is farther than this from the measured state is "
          "rejected (rad)", low=0.001, high=6.0),
    Param("position_min", list(FR3_Q_MIN), "lower joint position limits (rad), joint_names order (FR3: "
          "franka_description's joint_limits.yaml)", read_only=True),
    Param("position_max", list(FR3_Q_MAX), "upper joint position limits (rad), joint_names order", read_only=True),
    Param("velocity_max", list(FR3_DQ_MAX), "joint velocity limits (rad/s), joint_names order", read_only=True),
    Param("acceleration_max", list(FR3_DDQ_MAX), "joint acceleration limits (rad/s^2), joint_names order",
          read_only=True),
    Param("workspace_min", list(_WS.box_min), "lower corner x, y, z (m, base frame fr3_link0) of the box the flange "
          "and fingertips stay in; every planned point is checked by the FR3's forward kinematics", read_only=True),
    Param("workspace_max", list(_WS.box_max), "upper corner x, y, z (m, base frame) of the hand's box",
          read_only=True),
    Param("table_height_m", _WS.table_height_m, "no point of the arm (elbow, wrist, flange, fingertips) is planned "
          "below this height (m, base frame; the table the FR3 stands on: 0)", read_only=True, low=-2.0, high=2.0),
    Param("home_position", list(FR3_HOME_Q), "joint positions (rad, joint_names order) the ~/home service moves "
          "to: the policy pauses, one slow move follows; ~/resume hands the arm back"),
    Param("home_speed_scale", 0.1, "fraction of the velocity and acceleration limits the ~/home move uses",
          low=0.01, high=1.0),
    Param("episode_timeout_s", 0.0, "the node pauses itself after an episode (from ~/resume or a new instruction "
          "on) has run this long; 0 = no limit (openpi's DROID client: 600 steps at 15 Hz = 40 s)", low=0.0,
          high=86400.0),
    # --- inputs ---
    Param("camera_names", ["exterior", "wrist"], "camera names the policy reads, one per camera_topics entry",
          read_only=True),
    Param("camera_topics", [_T.exterior_image, _T.wrist_image], "image topics, one per camera_names entry",
          read_only=True),
    Param("compressed_images", False, "subscribe sensor_msgs/CompressedImage instead of sensor_msgs/Image",
          read_only=True),
    Param("image_max_age_s", 0.5, "a camera whose last frame is older than this stops commanding (s)",
          low=0.01, high=60.0),
    Param("joint_states_topic", _T.joint_states, "sensor_msgs/JointState of the arm", read_only=True),
    Param("joint_names", list(FR3_ARM_JOINTS), "arm joints in the policy's action order (message order is irrelevant)",
          read_only=True),
    Param("joint_states_max_age_s", 0.25, "maximum age of the joint state (s)", low=0.01, high=60.0),
    Param("gripper_states_topic", _T.gripper_states, "sensor_msgs/JointState of the gripper fingers ('' = no "
          "gripper state; the policy then sees an open gripper)", read_only=True),
    Param("gripper_joint_names", list(FR3_FINGER_JOINTS), "finger joints whose positions sum to the opening",
          read_only=True),
    Param("gripper_max_width_m", 0.08, "finger opening of a fully open gripper (m)", read_only=True,
          low=0.001, high=1.0),
    Param("gripper_max_age_s", 0.5, "maximum age of the gripper state (s)", low=0.01, high=60.0),
    Param("instruction_topic", _T.instruction, "std_msgs/String with the language instruction (latched or repeated)",
          read_only=True),
    Param("instruction", "", "the language instruction; when set, it wins over instruction_topic"),
    # --- outputs ---
    Param("command_topic", _T.arm_command, "trajectory_msgs/JointTrajectory for the joint_trajectory_controller",
          read_only=True),
    Param("gripper_backend", "franka_gripper", "franka_gripper (its move / grasp actions, franka_msgs: open = move, "
          "close = grasp, only on changes), topic (std_msgs/Float64 width on gripper_command_topic: the simulator) or "
          "none", read_only=True),
    Param("gripper_node", "/franka_gripper", "the franka_gripper node whose ~/move and ~/grasp actions are used "
          "(older set-ups: /fr3_gripper or /panda_gripper)", read_only=True),
    Param("gripper_force_n", 20.0, "grasp force (N) of the franka_gripper backend", read_only=True, low=1.0,
          high=70.0),
    Param("gripper_speed_m_s", 0.1, "finger speed (m/s) of the franka_gripper backend", read_only=True, low=0.01,
          high=0.2),
    Param("gripper_command_topic", _T.gripper_command, "std_msgs/Float64 finger opening (m) for the topic backend",
          read_only=True),
    Param("controller_manager", "/controller_manager", "controller_manager whose ~/list_controllers tells whether "
          "controller_name is active ('' = do not ask)", read_only=True),
    Param("controller_name", "fr3_arm_controller", "the joint_trajectory_controller command_topic belongs to",
          read_only=True),
    Param("status_rate_hz", 1.0, "rate of ~/status and /diagnostics (Hz)", read_only=True, low=0.1, high=100.0),
)
BY_NAME = {p.name: p for p in PARAMS}


def typed(param: Param, value: object) -> object:
    """`value` widened to the parameter's declared type.

    An integer where a double is declared (`alpha:=1` on a command line or in a launch file, `speed_scale: 1` in a
    params file) becomes that double, and so do the integers of a double list. Anything else is returned as given,
    for the declared type check to refuse.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, array.array):  # how rclpy hands over `ros2 param set NAME "[0, 1, ...]"`
        value = value.tolist()
    if isinstance(value, (list, tuple)) and not value and param.default == [""]:
        return [""]  # `finetuned_checkpoints:=[]`: the same meaning, and a type rclpy can declare (not a byte array)
    if isinstance(value, str) and isinstance(param.default, list) and param.default \
            and isinstance(param.default[0], str):
        return [value]  # `finetuned_checkpoints:=pi0_cube`: a list of one
    if isinstance(param.default, float) and isinstance(value, int):
        return float(value)
    if (isinstance(param.default, list) and param.default and isinstance(param.default[0], float)
            and isinstance(value, (list, tuple))
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return value


_ROS_TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string", list: "list"}


def type_problem(param: Param, value: object) -> str | None:
    """Why `value` (already `typed`) cannot be the parameter's value, or None; one line with the fix."""
    want = type(param.default)
    if want is list:
        inner = type(param.default[0])
        if isinstance(value, (list, tuple)) and value and all(type(v) is inner for v in value):
            return None
        return (f"{param.name}={value!r} must be a non-empty list of {_ROS_TYPE_NAMES[inner]} (e.g. "
                f"{param.default!r}); fix the params file or the launch argument")
    if type(value) is want:
        return None
    given = _ROS_TYPE_NAMES.get(type(value), type(value).__name__)
    return (f"{param.name}={value!r} has type {given}, the parameter's type is {_ROS_TYPE_NAMES[want]} "
            f"(default {param.default!r}); fix the params file or the launch argument")


def launch_value(name: str, text: str) -> object:
    """A launch argument's text as the parameter's declared type.

    Strings are taken as written (YAML would turn `instruction:=yes` into True); everything else is read as YAML, as
    `ros2 param set` reads it, then widened.
    """
    import yaml

    param = BY_NAME.get(name)  # None: a ROS parameter of every node (use_sim_time)
    if param is None:
        return yaml.safe_load(text)
    if isinstance(param.default, str):
        return text
    value = yaml.safe_load(text)
    if isinstance(param.default, list) and param.default and isinstance(param.default[0], str) \
            and not isinstance(value, list):
        return [text]  # `finetuned_checkpoints:=2024-05-01`: the name as written, not a YAML date
    return typed(param, value)


def check_change(name: str, value: object, checkpoint_root: str = "", groups: tuple[str, ...] = (),
                 num_finetuned: int = 0) -> str | None:
    """Validate one new value (the on-set callback); returns the reason it is refused, or None.

    Args:
        name: parameter name.
        value: the new value.
        checkpoint_root: where checkpoints may live.
        groups: the merger's groups (empty = unknown yet: not checked).
        num_finetuned: the serving merge's finetuned checkpoints (0 = unknown yet: not checked).
    """
    if name == "alpha":
        if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            return f"alpha={value!r} must be a number in [0, 1] (0 = pretrained, 1 = finetuned)"
    elif name in GROUP_ALPHAS:
        if not (isinstance(value, float) and (value == -1.0 or 0.0 <= value <= 1.0)):
            return f"{name}={value!r} must be -1 (use alpha) or in [0, 1]"
        if value >= 0.0 and groups and GROUP_ALPHAS[name] not in groups:
            return (f"{name}: the group preset has no '{GROUP_ALPHAS[name]}' group (groups: {', '.join(groups)}); "
                    "leave it at -1")
    elif name in ("base_checkpoint", "finetuned_checkpoints", "steering_checkpoint"):
        paths = [value] if isinstance(value, str) else [v for v in value if v]
        if name == "steering_checkpoint":
            paths = [p for p in paths if p]  # '' = no value function
        for path in paths:
            try:
                resolve_checkpoint(path, checkpoint_root)
            except ValueError as exc:
                return f"{name}: {exc}"
    elif name == "instruction_alphas":
        try:
            rules = parse_rules(value)
            if num_finetuned:
                check_rules(rules, groups, num_finetuned)
        except ConfigError as exc:
            return str(exc)
    elif name == "gripper_backend" and value not in GRIPPER_BACKENDS:
        return f"gripper_backend='{value}' is unknown; use one of {', '.join(GRIPPER_BACKENDS)}"
    elif name == "merge_layout" and value not in MERGE_LAYOUTS:
        return f"merge_layout='{value}' is unknown; use one of {', '.join(MERGE_LAYOUTS)}"
    elif name == "swap_mode" and value not in SWAP_MODES:
        return f"swap_mode='{value}' is unknown; use one of {', '.join(SWAP_MODES)}"
    elif name == "home_position":
        if len(value) != len(FR3_HOME_Q) or not all(math.isfinite(v) for v in value):
            return f"home_position={list(value)} must be {len(FR3_HOME_Q)} finite joint positions (rad)"
    elif name == "dtype" and value not in ("", "bfloat16", "float32"):
        return f"dtype='{value}' is unknown; use '' (the checkpoint's), bfloat16 or float32"
    elif name == "lerobot_stats" and value not in ("", *STATS_CHOICES):
        return f"lerobot_stats='{value}' is unknown; use '' (refuse differing statistics), base or finetuned"
    elif name == "policy_backend" and value not in POLICY_BACKENDS:
        return f"policy_backend='{value}' is unknown; use one of {', '.join(POLICY_BACKENDS)}"
    elif name == "policy_server_uri" and not str(value).startswith(("ws://", "wss://")):
        return f"policy_server_uri='{value}' must be a websocket address, e.g. ws://gpu-host:8000"
    elif name == "steering" and value not in STEERING_MODES:
        return f"steering='{value}' is unknown; use one of {', '.join(STEERING_MODES)}"
    elif name == "steering_samples" and not (isinstance(value, int) and 1 <= value <= 64):
        return f"steering_samples={value!r} must be an integer in [1, 64]"
    elif name == "execution_mode" and value not in EXECUTION_MODES:
        return f"execution_mode='{value}' is unknown; use one of {', '.join(EXECUTION_MODES)}"
    return None


# What differs for the simulated arm (sim.launch.py, the demo, the tests): it starts armed at full speed, and its
# gripper takes a width on a topic.
SIM_OVERRIDES = {"start_paused": False, "speed_scale": 1.0, "gripper_backend": "topic"}
