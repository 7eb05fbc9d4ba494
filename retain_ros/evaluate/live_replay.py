"""Live replay (`retain-eval replay`): play a bag into live topics and record what a running node publishes.

The pip-only stand-in for `ros2 bag play` + `ros2 bag record`, and the only module of `evaluate/` that imports rclpy.
Messages travel as raw CDR both ways: each recorded message is published as the bytes in the bag (no
deserialisation), and the recorder's subscriptions take raw=True so the node's messages go into a rosbags Writer as
they came off the wire; the new bag opens in `ros2 bag` on a robot PC.

Threads: the main thread publishes on schedule (log-time offsets divided by `rate`); one executor thread runs the
recorder's callbacks, which are the only code that touches the Writer.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer

from retain_ros.bag_types import typestore
from retain_ros.errors import ConfigError
from retain_ros.evaluate.bag_reader import Bag
from retain_ros.polling import poll

log = logging.getLogger(__name__)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
LATCHED_TYPES = ("std_msgs/msg/String",)  # instruction-like topics: a late subscriber still gets the last one


@dataclass
class ReplayResult:
    """What a replay did.

    Attributes:
        published: topic -> messages published.
        recorded: topic -> messages recorded.
        duration_s: wall time from the first to the last publish.
        bag_duration_s: log-time span of the replayed messages.
        unmatched: topics that had no subscriber when publishing started.
    """

    published: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    bag_duration_s: float = 0.0
    unmatched: list[str] = field(default_factory=list)


def message_class(msgtype: str) -> type:
    """The rclpy class of a rosbag2 type name such as 'sensor_msgs/msg/Image'.

    Raises:
        ConfigError: the message package is not installed.
    """
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"message type {msgtype} is not installed; pip install ros-jazzy-{pkg.replace('_', '-')} "
                          "(or source the ROS workspace that defines it)") from None


def _qos(msgtype: str, latched: bool, best_effort: bool = False) -> QoSProfile:
    durable = latched and msgtype in LATCHED_TYPES
    reliability = QoSReliabilityPolicy.BEST_EFFORT if best_effort else QoSReliabilityPolicy.RELIABLE
    return QoSProfile(depth=1 if durable else 100, reliability=reliability,
                      durability=QoSDurabilityPolicy.TRANSIENT_LOCAL if durable else QoSDurabilityPolicy.VOLATILE)


class Recorder:
    """Raw subscriptions that write every message, stamped with its arrival time, into a new bag.

    The subscriptions' callbacks (executor thread) only queue the bytes; one writer thread owns the rosbags Writer
    (sqlite objects may only be used by the thread that created them, and a slow disk must not stall the executor).
    """

    def __init__(self, node, path: Path, topics: dict[str, str], storage: str, durable: set[str],
                 best_effort: set[str] = frozenset()) -> None:
        """Open the bag and subscribe.

        Args:
            node: the rclpy node that owns the subscriptions.
            path: the bag to create.
            topics: topic -> message type to record.
            storage: 'sqlite3' or 'mcap'.
            durable: topics published latched (recorded with transient-local durability).
            best_effort: topics published best-effort, such as sensor-data cameras (a reliable subscription would
                never match them).
        """
        classes = {topic: message_class(msgtype) for topic, msgtype in topics.items()}
        self.counts = {topic: 0 for topic in topics}
        self._node = node
        self._queue: queue.Queue = queue.Queue()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, args=(path, topics, storage),
                                        name="retain_replay_writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._error is not None:
            raise ConfigError(f"cannot create the record bag {path}: {self._error}")
        # Topics this process plays latched are recorded latched too: their one message is kept for a late match.
        self.subscriptions = {t: node.create_subscription(classes[t], t, self._callback(t),
                                                          _qos(m, t in durable, t in best_effort), raw=True)
                              for t, m in topics.items()}

    def _write_loop(self, path: Path, topics: dict[str, str], storage: str) -> None:
        try:
            store = typestore()
            writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
            writer.open()
            conns = {t: writer.add_connection(t, m, typestore=store) for t, m in topics.items()}
        except Exception as exc:  # noqa: BLE001  (reported by __init__)
            self._error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while (item := self._queue.get()) is not None:
                topic, stamp_ns, raw = item
                writer.write(conns[topic], stamp_ns, raw)
        finally:
            writer.close()

    def _callback(self, topic: str) -> Callable[[bytes], None]:
        def keep(raw: bytes) -> None:  # executor thread
            self._queue.put((topic, self._node.get_clock().now().nanoseconds, bytes(raw)))
            self.counts[topic] += 1
        return keep

    def close(self) -> None:
        """Write what is queued and finish the bag (after the executor stopped)."""
        self._queue.put(None)
        self._thread.join(timeout=60.0)


def replay(bag_path: str | Path, record_path: str | Path, record_topics: dict[str, str], rate: float = 1.0,
           topics: Sequence[str] | None = None, wait_for: Sequence[str] | None = None, storage: str = "sqlite3",
           wait_s: float = 10.0,
           linger_s: float = 2.0, min_subscribers: int = 1, domain_id: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Publish a bag's messages at their recorded timing while recording `record_topics` into a new bag.

    Args:
        bag_path: the bag to play.
        record_path: the bag to create.
        record_topics: topic -> rosbag2 type to record (the node's outputs; replayed topics may be included).
        rate: playback speed (2 = twice as fast).
        topics: the bag topics to play (None = all).
        wait_for: played topics that must have `min_subscribers` before playing starts (None = all played).
        storage: storage of the recorded bag ('sqlite3' or 'mcap').
        wait_s: how long to wait for subscribers before playing (topics still unmatched are reported).
        linger_s: how long to keep recording after the last message.
        min_subscribers: subscribers (besides this recorder) each played topic waits for.
        domain_id: ROS domain (None = ROS_DOMAIN_ID).
        progress: called with (published, total) after each message.

    Raises:
        ConfigError: bad rate, missing bag, existing record path, uninstalled message types.
    """
    if not rate > 0:
        raise ConfigError(f"--rate {rate} must be > 0 (1 = recorded speed)")
    record_path = Path(record_path)
    if record_path.exists():
        raise ConfigError(f"record path {record_path} already exists; remove it or choose another --record")
    if storage not in STORAGES:
        raise ConfigError(f"unknown bag storage '{storage}'; use one of {', '.join(STORAGES)}")
    with Bag(bag_path) as bag:
        played = {t: m for t, (m, n) in bag.topics.items() if n and (topics is None or t in topics)}
        if topics is not None and set(topics) - set(played):
            raise ConfigError(f"bag {bag.path} has no messages on {sorted(set(topics) - set(played))}; it has: "
                              f"{bag.describe_topics()}")
        messages = list(bag.raw_messages(list(played)))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    result = ReplayResult()
    recorder = None
    try:
        node = rclpy.create_node("retain_replay", context=context)
        publishers = {t: node.create_publisher(message_class(m), t, _qos(m, True)) for t, m in played.items()}
        recorder = Recorder(node, record_path, record_topics, storage,
                            {t for t, m in played.items() if m in LATCHED_TYPES})
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name="retain_replay_recorder", daemon=True)
        spinner.start()
        waited = {t: p for t, p in publishers.items() if wait_for is None or t in wait_for}
        need = {t: min_subscribers + (1 if t in record_topics else 0) for t in waited}  # + this recorder

        def unmatched() -> list[str]:
            return sorted(t for t, p in waited.items() if p.get_subscription_count() < need[t])

        poll(lambda: not unmatched(), wait_s)
        result.unmatched = unmatched()
        if result.unmatched:
            log.warning("no subscriber on %s after %.0f s; playing anyway", ", ".join(result.unmatched), wait_s)
        poll(lambda: all(s.get_publisher_count() > 0 for s in recorder.subscriptions.values()), min(wait_s, 2.0))
        result.published, result.duration_s = _play(messages, publishers, rate, progress)
        if messages:
            result.bag_duration_s = (messages[-1][2] - messages[0][2]) * 1e-9
        time.sleep(linger_s)
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        result.recorded = dict(recorder.counts)
    finally:
        if recorder is not None:
            recorder.close()
        context.try_shutdown()
    return result


def _play(messages: list, publishers: dict, rate: float,
          progress: Callable[[int, int], None] | None) -> tuple[dict[str, int], float]:
    """Publish on schedule; returns (messages per topic, wall time from the first to the last publish)."""
    counts = {t: 0 for t in publishers}
    if not messages:
        return counts, 0.0
    first_ns = messages[0][2]
    started = time.monotonic()
    for i, (topic, _, log_ns, raw) in enumerate(messages):
        delay = started + (log_ns - first_ns) * 1e-9 / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publishers[topic].publish(raw)
        counts[topic] += 1
        if progress is not None:
            progress(i + 1, len(messages))
    return counts, time.monotonic() - started
