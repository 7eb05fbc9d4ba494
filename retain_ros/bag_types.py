"""The rosbags typestore for the package's bags: ROS 2 Jazzy's types plus retain_ros_msgs.

rosbags needs a message's definition to write or read it. The package's own types are read from the same msg/*.msg
files that colcon and msg/install_into_venv.sh build, so bags recorded here open in `ros2 bag` on a robot PC and the
bag readers need no ROS install.
"""

from __future__ import annotations

from functools import lru_cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from retain_ros.paths import msg_dir

MSG_PACKAGE = "retain_ros_msgs"
ACTION_CHUNK = f"{MSG_PACKAGE}/msg/ActionChunk"


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """Jazzy's typestore with every retain_ros_msgs message registered (built once per process)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{MSG_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
