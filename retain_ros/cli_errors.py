"""How every command-line tool ends on a user mistake or Ctrl-C: one line on stderr and a conventional exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

from retain_ros.errors import ConfigError

USER_ERROR = 2  # argparse's code for bad usage
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def run_reporting_errors(prog: str, command: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run `command`; a ConfigError becomes 'PROG: error: ...' and exit 2, Ctrl-C 'PROG: <interrupted>' and 130.

    Args:
        prog: the tool's name, prefixed to the message.
        command: the tool's work; returns its exit code.
        interrupted: what to say on Ctrl-C (e.g. what was or was not written).
    """
    try:
        return command()
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED
