"""openpi's policy-server protocol: msgpack frames with numpy arrays, and DROID's observation and action layout.

The protocol (openpi `serving/websocket_policy_server.py`, `packages/openpi-client`): after the websocket handshake
the server sends one frame of metadata (a dict); then each client frame is an observation dict and each server frame
the answer dict, `{"actions": (H, 8) array, ...}`. A server that fails sends a text frame (the error) and closes.
Arrays travel as maps `{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}` and numpy
scalars as `{b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}` (openpi-client's `msgpack_numpy`, which
refuses object arrays; so does this module).

DROID's request (openpi `policies/droid_policy.py`, `examples/droid/main.py`): `observation/exterior_image_1_left`
and `observation/wrist_image_left` (uint8 HxWx3, resized with padding to 224x224 by the client),
`observation/joint_position` (7,), `observation/gripper_position` (1,), `prompt`; the answer's `actions` are H steps
of 7 normalised joint velocities and 1 gripper position (DROID's convention, `droid_action.py`).

retain-serve's additions, which a plain openpi server or client never sends: the metadata key `retain_serve`
(protocol version, the policy's chunk layout, the serving alphas), an answer's `retain` entry (which merge computed
it), and control frames `{"retain/alphas": {...}}` answered by `{"retain/ack": ...}` or `{"retain/error": "..."}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgpack
import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import ActionChunk, ActionSpace, Observation
from retain_ros.policy.processor_reference import resize_with_pad

EXTERIOR_IMAGE = "observation/exterior_image_1_left"
WRIST_IMAGE = "observation/wrist_image_left"
JOINT_POSITION = "observation/joint_position"
GRIPPER_POSITION = "observation/gripper_position"
PROMPT = "prompt"
ACTIONS = "actions"
DROID_IMAGE_SIZE = 224  # openpi's DROID client resizes both cameras to 224x224 before sending
# The node's camera names and the request keys they travel under.
DROID_CAMERAS = {"exterior": EXTERIOR_IMAGE, "wrist": WRIST_IMAGE}

PROTOCOL_VERSION = 1
SERVER_KEY = "retain_serve"  # in the metadata: the server is retain-serve and takes control frames
ANSWER_KEY = "retain"  # in an answer: which merge computed it
SET_ALPHAS = "retain/alphas"
ACK = "retain/ack"
ERROR = "retain/error"
SAMPLES = "retain/samples"  # in a request: {"k", "noise_scale", "seed"}: draw K chunks (value-guided steering)
CANDIDATES = "retain/candidates"  # in the answer to such a request: (K, H, D), the first is `actions`


def _pack_default(obj: object) -> object:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in "VOc":
        raise TypeError(f"cannot send a numpy array of dtype {obj.dtype} (only numbers and booleans travel)")
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": data.tobytes(), b"dtype": data.dtype.str, b"shape": list(data.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _unpack_hook(obj: dict) -> object:
    if b"__ndarray__" in obj:
        return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"dtype"])).reshape(obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def pack(obj: object) -> bytes:
    """One frame: `obj` (dicts, lists, strings, numbers, numpy arrays and scalars) as openpi's msgpack."""
    return msgpack.packb(obj, default=_pack_default)


def unpack(frame: bytes) -> object:
    """The object of one frame (arrays come back read-only, as views of the frame).

    Raises:
        ConfigError: the frame is not msgpack, or an array entry is broken.
    """
    try:
        return msgpack.unpackb(frame, object_hook=_unpack_hook)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ConfigError(f"unreadable frame ({type(exc).__name__}: {exc})") from None


def droid_request(obs: Observation, image_size: int = DROID_IMAGE_SIZE) -> dict[str, object]:
    """The DROID request of an observation, images resized with padding as openpi's DROID client does.

    Raises:
        ConfigError: a camera the DROID layout needs is missing.
    """
    missing = [c for c in DROID_CAMERAS if c not in obs.images]
    if missing:
        raise ConfigError(f"the DROID request needs the cameras {list(DROID_CAMERAS)}; {missing} missing")
    request: dict[str, object] = {key: resize_with_pad(obs.images[cam], image_size, image_size)
                                  for cam, key in DROID_CAMERAS.items()}
    request[JOINT_POSITION] = np.asarray(obs.joint_positions, dtype=np.float64)
    request[GRIPPER_POSITION] = np.asarray([obs.gripper_position], dtype=np.float64)
    request[PROMPT] = obs.instruction
    return request


def observation_from_request(request: Mapping, cameras: Sequence[str], stamp_ns: int = 0) -> Observation:
    """The Observation of a DROID request, for a policy that reads `cameras` (a subset of 'exterior', 'wrist').

    Raises:
        ConfigError: a missing key or a value of the wrong kind, naming it (the client gets the message).
    """
    if not isinstance(request, Mapping):
        raise ConfigError(f"a request must be a map of DROID keys, got {type(request).__name__}")
    unknown = [c for c in cameras if c not in DROID_CAMERAS]
    if unknown:
        raise ConfigError(f"the policy reads cameras {list(cameras)}; the DROID request carries only "
                          f"{list(DROID_CAMERAS)}")
    missing = [k for k in (*[DROID_CAMERAS[c] for c in cameras], JOINT_POSITION, GRIPPER_POSITION)
               if k not in request]
    if missing:
        raise ConfigError(f"the request lacks {missing}; a DROID request holds {EXTERIOR_IMAGE}, {WRIST_IMAGE}, "
                          f"{JOINT_POSITION}, {GRIPPER_POSITION} and {PROMPT}")
    images = {}
    for cam in cameras:
        image = np.asarray(request[DROID_CAMERAS[cam]])
        if np.issubdtype(image.dtype, np.floating):  # openpi accepts float images in [0, 1]
            image = (255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)
        if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:  # channel first
            image = np.transpose(image, (1, 2, 0))
        images[cam] = np.array(image, dtype=np.uint8, order="C")  # writable: a frame's arrays are read-only views
    gripper = np.asarray(request[GRIPPER_POSITION], dtype=np.float64).reshape(-1)
    if gripper.size != 1:
        raise ConfigError(f"{GRIPPER_POSITION} has {gripper.size} values; it holds one (0 open .. 1 closed)")
    prompt = request.get(PROMPT, "")
    if not isinstance(prompt, str):
        raise ConfigError(f"{PROMPT} must be a string, got {type(prompt).__name__}")
    joints = np.asarray(request[JOINT_POSITION], dtype=np.float64).reshape(-1)
    return Observation(images, joints, float(gripper[0]), prompt, stamp_ns)


def chunk_from_answer(answer: object, space: ActionSpace, dt_s: float, stamp_ns: int) -> ActionChunk:
    """The ActionChunk of a server's answer, checked: (H, dim) finite numbers, clipped to `space`.

    Raises:
        ConfigError: a malformed answer (not a map, no actions, wrong shape, NaN), naming what is wrong.
    """
    if isinstance(answer, str):
        first = answer.strip().splitlines()[-1] if answer.strip() else "(empty)"
        raise ConfigError(f"the policy server failed: {first}")
    if not isinstance(answer, Mapping) or ACTIONS not in answer:
        kind = sorted(answer) if isinstance(answer, Mapping) else type(answer).__name__
        raise ConfigError(f"malformed answer from the policy server: no '{ACTIONS}' (got {kind})")
    actions = answer[ACTIONS]
    if not isinstance(actions, np.ndarray) or actions.dtype.kind not in "fiu":
        raise ConfigError(f"malformed answer from the policy server: '{ACTIONS}' is "
                          f"{getattr(actions, 'dtype', type(actions).__name__)}, not an array of numbers")
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < space.dim:
        raise ConfigError(f"malformed answer from the policy server: '{ACTIONS}' has shape {actions.shape}; "
                          f"expected (H, {space.dim}) ({len(space.joint_names)} joints + gripper)")
    actions = actions[:, :space.dim]  # openpi's DROID policy answers the first 8 numbers; more are ignored
    if not np.all(np.isfinite(actions)):
        raise ConfigError("malformed answer from the policy server: the actions hold NaN or infinite values")
    return ActionChunk(space.clip(actions), dt_s, space, stamp_ns)
