"""Reading rosbag2 bags with the pure-Python `rosbags` library: open, check topics, iterate, split into episodes.

Accepts what `ros2 bag record` writes on a robot and what `retain-sim collect --bag` writes here: a bag directory
(metadata.yaml + .db3 or .mcap files) or a single .db3 / .mcap file. Bags without embedded message definitions
(rosbag2 before Iron) are read with the standard ROS 2 Jazzy types.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rosbags.highlevel import AnyReader

from retain_ros.bag_types import typestore
from retain_ros.errors import ConfigError

BAG_SUFFIXES = (".db3", ".mcap")


class BagError(ConfigError):
    """A bag cannot be used: missing, unreadable, or lacking what the evaluation needs; the text names the fix."""


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message.

    Attributes:
        topic: topic name.
        msgtype: rosbag2 type name (e.g. sensor_msgs/msg/Image).
        log_ns: time the recorder received it (ns); the replay clock.
        msg: the `rosbags` message object (same fields as the rclpy class).
    """

    topic: str
    msgtype: str
    log_ns: int
    msg: object


@dataclass(frozen=True)
class Episode:
    """A time window of one bag evaluated as one episode.

    Attributes:
        bag: the bag path.
        index: episode number within the bag.
        start_ns: first log time included.
        end_ns: first log time excluded (None = to the end of the bag).
    """

    bag: Path
    index: int
    start_ns: int
    end_ns: int | None

    @property
    def name(self) -> str:
        """Label used in reports: bag name, plus the episode number when the bag was split."""
        stem = self.bag.name if self.bag.is_dir() else self.bag.stem
        return stem if self.index == 0 and self.end_ns is None else f"{stem}#{self.index}"


def check_bag_path(path: str | Path) -> Path:
    """Check that `path` looks like a rosbag2 bag.

    Raises:
        BagError: the path does not exist, or is neither a bag directory nor a .db3/.mcap file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist; pass a bag directory (with metadata.yaml) or a .db3/.mcap file")
    if path.is_dir() and not (path / "metadata.yaml").exists() and not any(
            p.suffix in BAG_SUFFIXES for p in path.iterdir()):
        raise BagError(f"{path} is a directory without metadata.yaml or .db3/.mcap files; it is not a rosbag2 bag")
    if path.is_file() and path.suffix not in BAG_SUFFIXES:
        raise BagError(f"{path} is not a rosbag2 file (expected {' or '.join(BAG_SUFFIXES)}, or the bag directory)")
    return path


class Bag:
    """An open bag (use as a context manager).

    Args:
        path: bag directory or single storage file.

    Raises:
        BagError: missing, not a bag, or corrupt (the reader's own reason is included).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = check_bag_path(path)
        self._reader = AnyReader([self.path], default_typestore=typestore())
        try:
            self._reader.open()
        except Exception as exc:  # noqa: BLE001  (rosbags raises several types for broken files)
            raise BagError(f"bag {self.path} cannot be read ({type(exc).__name__}: {exc}); it is missing files or "
                           "corrupt. Fix: re-record it, or `ros2 bag reindex` it on a ROS PC") from None

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying reader."""
        self._reader.close()

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """Topic -> (message type, message count)."""
        out: dict[str, tuple[str, int]] = {}
        for conn in self._reader.connections:
            _, count = out.get(conn.topic, (conn.msgtype, 0))
            out[conn.topic] = (conn.msgtype, count + conn.msgcount)
        return out

    @property
    def start_ns(self) -> int:
        """Log time of the first message."""
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        """Log time just after the last message."""
        return int(self._reader.end_time)

    def describe_topics(self) -> str:
        """A readable list of the bag's topics (for error messages)."""
        return ", ".join(f"{t} ({m}, {n} msgs)" for t, (m, n) in sorted(self.topics.items())) or "no topics"

    def require(self, topics: dict[str, str], hint: str = "") -> None:
        """Check that each topic exists with messages.

        Args:
            topics: topic -> what it is for (named in the message).
            hint: how to point the evaluation at other topics.

        Raises:
            BagError: naming every missing topic and listing the topics the bag has.
        """
        have = self.topics
        missing = [f"{t} ({why})" for t, why in topics.items() if have.get(t, ("", 0))[1] == 0]
        if missing:
            raise BagError(f"bag {self.path} has no messages on {', '.join(missing)}. The bag has: "
                           f"{self.describe_topics()}. {hint}".rstrip())

    def messages(self, topics: Sequence[str], start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[BagMessage]:
        """Deserialised messages of `topics` in log-time order, within [start_ns, end_ns).

        Raises:
            BagError: a message cannot be deserialised (corrupt data).
        """
        conns = [c for c in self._reader.connections if c.topic in set(topics)]
        if not conns:
            return
        try:
            for conn, log_ns, raw in self._reader.messages(connections=conns, start=start_ns, stop=end_ns):
                yield BagMessage(conn.topic, conn.msgtype, int(log_ns), self._reader.deserialize(raw, conn.msgtype))
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"bag {self.path} is corrupt: reading stopped with {type(exc).__name__}: {exc}") from None

    def raw_messages(self, topics: Sequence[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log_ns, CDR bytes) in log-time order, for replay into live topics."""
        conns = [c for c in self._reader.connections if topics is None or c.topic in set(topics)]
        for conn, log_ns, raw in self._reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, int(log_ns), bytes(raw)

    def episodes(self, marker_topic: str = "") -> list[Episode]:
        """Split the bag into episodes.

        Args:
            marker_topic: '' = the whole bag is one episode; otherwise every message on this topic starts a new
                episode at its log time (what comes before the first marker is an episode of its own).

        Raises:
            BagError: the marker topic is absent.
        """
        if not marker_topic:
            return [Episode(self.path, 0, self.start_ns, None)]
        self.require({marker_topic: "episode markers"}, "Fix: pass --episode-topic '' to use one episode per bag")
        marks = sorted({m.log_ns for m in self.messages([marker_topic])})
        bounds = ([self.start_ns] if marks[0] > self.start_ns else []) + marks
        return [Episode(self.path, i, start, bounds[i + 1] if i + 1 < len(bounds) else None)
                for i, start in enumerate(bounds)]
