"""The lifecycle transitions, written once: subclasses fill in `_setup`, `_teardown`, `_activate`, `_deactivate`.

- configure -> `_setup()`; an exception is logged with its traceback here (rclpy swallows it) and the node stays
  unconfigured after `_teardown()` cleaned up whatever was created before the failure.
- activate / deactivate -> `_activate()` / `_deactivate()`; cleanup and shutdown -> `_teardown()`, which must cope
  with a setup that failed halfway (check each attribute before releasing it).
- `autostart` (parameter, default true): configure and activate right after construction, as `ros2 launch` users
  expect from a node that is not driven by a lifecycle manager.
"""

from __future__ import annotations

import signal
import sys
import traceback

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from retain_ros.errors import ConfigError


class ManagedNode(LifecycleNode):
    """A lifecycle node whose subclasses implement only the four hooks below.

    Args:
        node_name: the node's name.
        **kwargs: passed to rclpy's LifecycleNode (e.g. `parameter_overrides`).
    """

    def __init__(self, node_name: str, **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="configure and activate on start (false: wait for a lifecycle manager)", read_only=True))
        self.active = False

    # ------------------------------------------------------------------------------------------- to implement
    def _setup(self) -> None:
        """Create everything the node needs (configure). Raise to fail the transition."""

    def _teardown(self) -> None:
        """Release what `_setup` created; must work after a setup that failed halfway."""

    def _activate(self) -> None:
        """Start producing output."""

    def _deactivate(self) -> None:
        """Stop producing output (the robot holds)."""

    # ------------------------------------------------------------------------------------------- transitions
    def autostart(self) -> bool:
        """Configure and activate when the `autostart` parameter says so; returns True when the node is active."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info("autostart is false: waiting for configure/activate from a lifecycle manager")
            return False
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._setup()
        except ConfigError as exc:  # a user mistake: its message names the fix, a traceback would only bury it
            self.get_logger().error(f"configure failed: {exc}")
            self._safe_teardown()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001  (log the traceback ourselves: rclpy would swallow it)
            self.get_logger().error(f"configure failed: {exc}\n{traceback.format_exc()}")
            self._safe_teardown()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._activate()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        self.active = True
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        try:
            self._deactivate()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"deactivate failed: {exc}\n{traceback.format_exc()}")
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._safe_teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_and_release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_and_release(self) -> None:
        """Deactivate if active (the robot is brought to rest), then release everything."""
        if self.active:
            self.active = False
            try:
                self._deactivate()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"deactivate on shutdown failed: {exc}")
        self._safe_teardown()

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._safe_teardown()
        return TransitionCallbackReturn.SUCCESS

    def _safe_teardown(self) -> None:
        try:
            self._teardown()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"teardown failed: {exc}\n{traceback.format_exc()}")

    def shutdown(self) -> None:
        """Leave the lifecycle (deactivating first, so the robot is left holding), ignoring an impossible transition."""
        try:
            self.trigger_shutdown()
        except Exception:  # noqa: BLE001  (already finalized, or caught mid-transition by the signal)
            if self.active:  # the transition did not run: stop the output ourselves, then release
                self._stop_and_release()


def spin_managed(node_factory, args: list[str] | None = None) -> int:
    """`main()` of a managed node: init, build, autostart, spin until Ctrl-C or external shutdown, clean up.

    Args:
        node_factory: () -> ManagedNode, called after rclpy.init.
        args: command-line arguments (ROS arguments such as --ros-args --params-file ...).

    Returns:
        The process exit code.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # rclpy's own handlers would shut the context down on Ctrl-C, and a node could then publish nothing more: no stop
    # trajectory. Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt here instead; the node leaves its lifecycle
    # (deactivate first) while the context still works, then the context is shut down. SIGINT is set explicitly: a
    # process started by a shell's background job (`cmd &` in a script) inherits it ignored, and Python then leaves it
    # so; such a node would not stop on ros2 launch's SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    node = None
    code = 0
    try:
        node = node_factory()
        node.autostart()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)  # back in Python often enough to see a signal
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as exc:  # a bad parameter before the node exists: one line, no traceback
        print(f"start-up failed: {exc}", file=sys.stderr, flush=True)
        code = 2
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    finally:
        # a second Ctrl-C (operators press it twice) or launch's SIGTERM must not cut the stop trajectory short
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if node is not None:
                node.shutdown()
                node.destroy_node()
            rclpy.try_shutdown()
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
            signal.signal(signal.SIGTERM, previous_sigterm)
    return code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
