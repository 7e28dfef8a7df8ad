"""An engine child's stop when the gateway that started it is gone, however it went.

The gateway gives each child a pipe as stdin and never writes to it: the pipe reaches its end
when the gateway closes it or its process ends (a crash, SIGKILL, the OOM killer), and the child
then stops itself rather than live on with no one to serve.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable


def on_parent_gone(stop: Callable[[], None]) -> None:
    """Call ``stop`` (from a thread of its own) once stdin reaches its end."""
    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
