"""An engine child's stop when the gateway that started it is gone, however it went.

The gateway gives each child a pipe as stdin and never writes to it: the pipe reaches its end
when the gateway closes it or its process ends (a crash, SIGKILL, the OOM killer), and the child
then stops itself rather than live on with no one to serve.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable


def on_parent_gone(stop: Callable[[], None]) -> None:
    """Call ``stop`` (from a thread of its own) once stdin reaches its end."""
    def watch() -> None:
        # The file descriptor, not sys.stdin: a thread blocked in a buffered read holds its lock,
        # and an interpreter that exits meanwhile aborts on it.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
