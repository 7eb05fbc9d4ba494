"""Node processes in an isolated ROS environment, and a client node in this process (for the demo and the tests).

Isolation: every run gets its own ROS_DOMAIN_ID, a Fast DDS profile with 20 initial announcements (late joiners are
discovered reliably on a loaded machine), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and ROS_LOG_DIR under its own
folder, so concurrent runs (tests, a demo, another user) never see each other. Nodes run in their own processes; the
calling process hosts one `Observer` node in its own rclpy Context on that domain (so domains never mix).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from retain_ros.polling import poll

_DOMAINS = itertools.count()

FASTDDS_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <participant profile_name="retain_test_participant" is_default_profile="true">
    <rtps>
      <builtin>
        <discovery_config>
          <initialAnnouncements>
            <count>20</count>
            <period><sec>0</sec><nanosec>100000000</nanosec></period>
          </initialAnnouncements>
        </discovery_config>
      </builtin>
    </rtps>
  </participant>
</profiles>
"""


def next_domain_id() -> int:
    """A domain id unlikely to collide with concurrent runs (pid-derived base, +1 per call)."""
    return 1 + (os.getpid() * 7 + next(_DOMAINS)) % 200


def ros_env(folder: Path, domain_id: int) -> dict[str, str]:
    """Environment of a node process (and of the observer): own domain, profile, log dir under `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    profile = folder / "fastdds_profile.xml"
    profile.write_text(FASTDDS_PROFILE)
    logs = folder / "ros_log"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), FASTRTPS_DEFAULT_PROFILES_FILE=str(profile),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(logs), PYTHONUNBUFFERED="1",
               RCUTILS_LOGGING_BUFFERED_STREAM="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class NodeProcess:
    """A node in its own Python process; output goes to a log file read back on failure."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path | None = None) -> None:
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        # same process group as the caller: a Ctrl-C in the terminal reaches the nodes too, and the caller's
        # stop() then finishes what the signal started (or kills what hangs)
        # -X faulthandler: a node that hangs on stop() prints every thread's stack to its log before it is killed
        self.proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", module, *args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=None if cwd is None else str(cwd))

    def output(self) -> str:
        """Everything the process printed so far (also after `stop`)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGINT (the node's own shutdown path); if it hangs, SIGABRT, then SIGKILL.

        SIGABRT makes a hanging node print every thread's stack to its log (`-X faulthandler`) before it dies.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, proc: NodeProcess | None = None,
               poll_s: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with `what` (and the node's log) on timeout.

    Raises:
        AssertionError: timeout, or `proc` exited meanwhile (an assertion, so pytest shows it as a failed check).
    """
    def check():
        value = predicate()
        if not value and proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"node exited ({proc.proc.returncode}) while waiting for {what}:\n{proc.output()}")
        return value

    value = poll(check, timeout_s, poll_s)
    if value:
        return value
    log = f"\n--- node log ---\n{proc.output()[-6000:]}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{log}")


class Observer:
    """An rclpy node in this process, in its own Context on the given domain, spun on a background thread."""

    def __init__(self, domain_id: int, name: str = "test_observer") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.messages: dict[str, list] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001  (context shut down under us)
                return

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and keep every message (with its arrival time) in `messages[topic]`."""
        self.messages[topic] = []

        def keep(msg, topic=topic):
            with self.lock:
                self.messages[topic].append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, keep, qos)
        return self.messages[topic]

    def received(self, topic: str) -> list:
        """Messages received so far on `topic` (without arrival times)."""
        with self.lock:
            return [m for _, m in self.messages.get(topic, [])]

    def call_trigger(self, service: str, timeout_s: float = 20.0):
        """Call a std_srvs/Trigger service and return its response."""
        from std_srvs.srv import Trigger

        return self.call(Trigger, service, Trigger.Request(), timeout_s)

    def call(self, srv_type, service: str, request, timeout_s: float = 20.0):
        """Call a service of type `srv_type` with `request` and return its response."""
        client = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise AssertionError(f"service {service} not available after {timeout_s} s")
            future = client.call_async(request)
            wait_until(future.done, timeout_s, f"response of {service}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_name: str, params: dict, timeout_s: float = 20.0):
        """Set parameters of a remote node the way `ros2 param set` does; returns the SetParametersResult list."""
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, node_name)
        if not client.wait_for_services(timeout_sec=timeout_s):
            raise AssertionError(f"parameter services of {node_name} not available after {timeout_s} s")
        future = client.set_parameters([Parameter(k, value=v) for k, v in params.items()])
        wait_until(future.done, timeout_s, f"set_parameters on {node_name}")
        return future.result().results

    def close(self) -> None:
        """Shut the context down and join the spin thread."""
        self.context.try_shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
