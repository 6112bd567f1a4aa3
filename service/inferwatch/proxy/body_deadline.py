"""A deadline for every request body, and threads kept for clients that send theirs slowly.

uWSGI's HTTP router streams a request body to the worker as the client sends it (it cannot
buffer one), and the worker thread reading it blocks until it is complete. Such a thread waits in
the kernel, with no CPU and without the interpreter lock, so waiting threads are cheap: a worker
runs ``threads + body_threads`` of them (:mod:`inferwatch.proxy.server`), and ``body_threads``
clients can trickle their bodies at once while ``threads`` requests still find a thread. Each body
has a deadline, which bounds how long it can hold its thread.

The deadline is ``body_timeout`` seconds after the app starts waiting for the body, which is when
the request's headers have reached the worker. Then :class:`BodyDeadlines` shuts the read side of
the request's connection: the blocked read ends, the client is answered 408 ``client_timeout``,
and the connection closes. It does so at a quiet moment (no body byte read in the last tick,
50 ms), and at most :data:`QUIET_GRACE_S` after the deadline: uWSGI's router drops a connection
whose worker side was shut while it still had a client byte to pass on, and the 408 with it. A
client that sends a byte every half second thus gets its 408 between 0.05 and 0.6 s after its
deadline; one that never pauses for 50 ms, after 1 s, and may see the connection close without
it. Silence ends a body sooner: ``client_timeout`` seconds without a byte is a 408 too (uWSGI's
read timeout).

Readers wrap each blocking body read in :func:`begin` and :meth:`BodyWait.end`
(:mod:`inferwatch.proxy.request_body`). Outside uWSGI (the Flask test client, another WSGI
server) :func:`begin` finds no deadlines in the environ and the body is read as it comes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable

try:
    import uwsgi  # present only inside uWSGI
except ImportError:
    uwsgi = None

# The environ key under which a request finds the worker's BodyDeadlines.
DEADLINES = "inferwatch.body_deadlines"

# How often the deadlines are checked once one has passed, and how long a body still arriving
# after its deadline may take to fall quiet before its connection is cut anyway.
TICK_S = 0.05
QUIET_GRACE_S = 1.0
# The longest the deadline thread sleeps.
IDLE_S = 1.0


class BodyWait:
    """One request waiting for its body; :meth:`end` says whether its deadline cut it off."""

    __slots__ = ("deadline", "timeout", "expired", "fd", "_deadlines", "_reader", "_seen")

    def __init__(self, deadlines: BodyDeadlines | None, fd: int):
        self.timeout = deadlines.timeout if deadlines is not None else 0.0
        self.deadline = time.monotonic() + self.timeout
        self.expired = False
        self.fd = fd  # the request's connection to the router
        self._deadlines = deadlines
        self._reader = threading.get_native_id()  # the thread that reads the body
        self._seen = -1

    def end(self) -> bool:
        """The read is over (done or failed); True when the deadline cut it off."""
        return self._deadlines.finish(self) if self._deadlines is not None else False

    def quiet(self) -> bool:
        """No body byte read since the last call (the first call always says no).

        The bytes come from the reading thread's own count of bytes read (``rchar`` in
        ``/proc/self/task/<tid>/io``): the body is read by uWSGI in C, where Python cannot see it
        grow, and the socket never holds a byte for long, the thread blocked on it takes each at
        once. Where that count cannot be read, every call says quiet.
        """
        try:
            with open(f"/proc/self/task/{self._reader}/io", "rb") as counts:
                read = next(int(line.split()[1]) for line in counts if line.startswith(b"rchar:"))
        except (OSError, StopIteration, ValueError):
            return True
        quiet, self._seen = read == self._seen, read
        return quiet

    def cut(self) -> None:
        """End the blocked read: shut the read side of the request's connection."""
        try:
            with socket.socket(fileno=socket.dup(self.fd)) as connection:
                connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # the connection is gone already


NO_WAIT = BodyWait(None, -1)


class BodyDeadlines:
    """A thread that cuts off bodies still arriving ``timeout`` seconds after their wait began."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._waits: dict[int, BodyWait] = {}  # by connection fd: a connection reads one body at a time
        self._lock = threading.Lock()  # a wait is finished or cut, never both
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inferwatch-body-deadlines", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(2 * IDLE_S)

    def serve(self, app: Callable) -> Callable:
        """The WSGI app with these deadlines in every request's environ."""
        def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
            environ[DEADLINES] = self
            return app(environ, start_response)

        return application

    def watch(self, wait: BodyWait) -> None:
        self._waits[wait.fd] = wait

    def finish(self, wait: BodyWait) -> bool:
        with self._lock:
            if self._waits.get(wait.fd) is wait:
                del self._waits[wait.fd]
            return wait.expired

    def _run(self) -> None:
        pause = IDLE_S
        while not self._stopped.wait(pause):
            pause = self.check(time.monotonic())

    def check(self, now: float) -> float:
        """Cut off the bodies that are due; the seconds until the next check is needed."""
        pause = min(IDLE_S, self.timeout)  # a wait that begins now is due after timeout
        for wait in list(self._waits.values()):
            if now < wait.deadline:
                pause = min(pause, wait.deadline - now)
            elif not wait.quiet() and now < wait.deadline + QUIET_GRACE_S:
                pause = TICK_S  # a byte came since the last look: wait for a quiet tick
            else:
                with self._lock:
                    if self._waits.get(wait.fd) is wait:  # not finished meanwhile: the fd is still its connection
                        del self._waits[wait.fd]
                        wait.expired = True
                        wait.cut()
        return max(pause, TICK_S)


def begin(environ: dict) -> BodyWait:
    """The body's wait has begun; call :meth:`BodyWait.end` once its read is over."""
    deadlines: BodyDeadlines | None = environ.get(DEADLINES)
    if deadlines is None or uwsgi is None:
        return NO_WAIT
    wait = BodyWait(deadlines, uwsgi.connection_fd())
    deadlines.watch(wait)
    return wait
