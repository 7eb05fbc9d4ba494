"""One background thread per owner, never two: the control loop and the merge worker each start and stop one.

A join that times out (an inference or a merge that hangs) keeps the handle, so a later start refuses to run a second
thread beside the first (two control threads would publish commands side by side).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WorkerThread:
    """Starts `target` on a daemon thread; `stop_event` is what asks it to return.

    Args:
        name: thread name (shows in tracebacks and py-spy).
        target: the thread's body; it must return soon after `stop_event` is set.
    """

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name, self.target = name, target
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether a thread started here is still alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread.

        Raises:
            RuntimeError: the previous thread has not ended (a stop timed out); starting another would run two.
        """
        if self.running:
            raise RuntimeError(f"the previous {self.name} thread is still running (its stop timed out); not starting "
                               "a second one; restart the node")
        self.stop_event.clear()
        self._thread = threading.Thread(target=self.target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the thread to return and wait for it; returns whether it ended (the handle is kept if not)."""
        self.stop_event.set()
        if self._thread is None:
            return True
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            return False
        self._thread = None
        return True
