"""A periodic look at the master from an open editor, on a thread of its own.

:class:`Watch` calls a method every ``interval`` seconds until stopped. It holds the
method's owner weakly, so an editor nobody holds any more is collected and its watch
ends by itself; :meth:`Watch.stop` ends it at once (the editor's ``close()``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

__all__ = ["Watch"]

log = logging.getLogger(__name__)


class Watch:
    """Call ``tick`` (a bound method) every ``interval`` seconds on a daemon thread.

    A failing tick is logged and the watch goes on: it only ever informs.
    """

    def __init__(self, tick: Callable[[], None], interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval={interval}: it must be above 0 seconds")
        self.interval = interval
        self._tick = weakref.WeakMethod(tick)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3grid-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()

    def stop(self) -> None:
        """End the watch (a tick under way finishes first, in the background)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            tick = self._tick()
            if tick is None:  # the owner is gone
                return
            try:
                tick()
            except Exception:
                log.exception("s3grid: the look at the master failed")
            del tick
