"""Threads kept for clients that send their request bodies slowly, and a deadline for every body.

uWSGI's HTTP router streams a request body to the worker as the client sends it (it cannot
buffer one), and the worker thread reading it blocks until it is complete. Such a thread waits in
the kernel, with no CPU and without the interpreter lock, so a worker runs ``threads`` +
``body_threads`` threads (:mod:`inferwatch.proxy.server`): ``body_threads`` clients can trickle
their bodies at once while ``threads`` requests still find a thread.

**Spare threads are parked** (:class:`SpareThreads`). uWSGI's threads take connections in turn,
first in, first out, so every idle thread serves a request now and then, starting with cold
caches: 64 more idle threads cost 0.03-0.12 ms of proxy CPU per request at concurrency 8
(``ab_compare.py``; 64 threads held by bodies cost nothing of the kind). So the ``body_threads``
spares wait out of the turn, in a handler of the uWSGI signal :data:`PARK_SIGNAL`, and one is let
go for every body that has been arriving for more than :data:`SLOW_S`. When the worker stops,
uWSGI ends its threads that wait for connections at once and waits for the others; seeing them go
(:data:`STOP_THREADS_GONE`, counted in ``/proc/self/task`` every :data:`IDLE_S`), the deadline
thread lets every parked one go. A parked thread also comes back every :data:`PARK_S` anyway.

**Every body has a deadline**, ``body_timeout`` seconds after the app starts waiting for it (when
the request's headers have reached the worker). Then :class:`BodyDeadlines` shuts the read side
of the request's connection: the blocked read ends, the client is answered 408
``client_timeout``, and the connection closes. It does so at a quiet moment (no body byte read in
the last tick, 50 ms), and at most :data:`QUIET_GRACE_S` after the deadline: uWSGI's router drops
a connection whose worker side was shut while it still had a client byte to pass on, and the 408
with it. A client that sends a byte every half second gets its 408 between 0.05 and 0.6 s after
its deadline; one that never pauses for 50 ms, 1 s after it, and may see the connection close
without the 408. Silence ends a body sooner: ``client_timeout`` seconds without a byte is a 408
too (uWSGI's read timeout). And when more than ``body_threads`` bodies are arriving slowly at once,
the ones waited for longest are due at once, so that the request threads stay free.

Readers wrap each blocking body read in :func:`begin` and :meth:`BodyWait.end`
(:mod:`inferwatch.proxy.request_body`). Outside uWSGI (the Flask test client, another WSGI
server) :func:`begin` finds no deadlines in the environ and the body is read as it comes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

try:
    import uwsgi  # present only inside uWSGI
except ImportError:
    uwsgi = None

log = logging.getLogger(__name__)

# The environ key under which a request finds the worker's BodyDeadlines.
DEADLINES = "inferwatch.body_deadlines"

# How often the deadlines are checked once one has passed, and how long a body still arriving
# after its deadline may take to fall quiet before its connection is cut anyway.
TICK_S = 0.05
QUIET_GRACE_S = 1.0
# The longest the deadline thread sleeps.
IDLE_S = 0.5
# A body still arriving after this long takes a spare thread's place: one is let go.
SLOW_S = 0.05
# The uWSGI signal (0-255) that parks a spare thread, and how long one stays parked at most.
PARK_SIGNAL = 97
PARK_S = 30.0
# The worker stops when this many of its threads have ended (or all its request threads, when it
# has fewer): uWSGI ends the threads that wait for connections at once, and the parked ones must
# then go (it waits for every thread). When every spare is parked, the request threads are all
# that end: with two of them, waiting for a third left the worker waiting out PARK_S.
STOP_THREADS_GONE = 3
# Signals asked for that no handler took in this long went to another worker: ask again.
PARK_ASKED_S = 1.0


class BodyWait:
    """One request waiting for its body; :meth:`end` says whether its deadline cut it off."""

    __slots__ = ("began", "deadline", "timeout", "expired", "crowded", "fd", "_deadlines", "_reader", "_seen",
                 "_looked")

    def __init__(self, deadlines: BodyDeadlines | None, fd: int):
        self.timeout = deadlines.timeout if deadlines is not None else 0.0
        self.began = time.monotonic()
        self.deadline = self.began + self.timeout
        self.expired = False
        self.crowded = False  # due before its time: more slow bodies than body threads
        self.fd = fd  # the request's connection to the router
        self._deadlines = deadlines
        self._reader = threading.get_native_id()  # the thread that reads the body
        self._seen = -1
        self._looked = 0.0  # when the count was last read

    def end(self) -> bool:
        """The read is over (done or failed); True when the deadline cut it off."""
        return self._deadlines.finish(self) if self._deadlines is not None else False

    def watch_progress(self) -> None:
        """Start counting the bytes read, if not yet: :meth:`quiet` compares with this count."""
        if self._seen < 0:
            self.quiet()

    def watched(self) -> bool:
        return self._seen >= 0

    def looked_within(self, seconds: float, now: float) -> bool:
        """The byte count was read at most ``seconds`` ago: "quiet" then spans that short a time."""
        return now - self._looked <= seconds

    def quiet(self) -> bool:
        """No body byte read since the last call (the first call always says no; where the count
        cannot be read, every call says yes).

        The count is the reading thread's own count of bytes read (``rchar`` in
        ``/proc/self/task/<tid>/io``): uWSGI reads the body in C, where Python cannot see it grow,
        and the socket never holds a byte for long, as the thread blocked on it takes each at once.
        Where that count cannot be read, every call says quiet.
        """
        try:
            with open(f"/proc/self/task/{self._reader}/io", "rb") as counts:
                read = next(int(line.split()[1]) for line in counts if line.startswith(b"rchar:"))
        except (OSError, StopIteration, ValueError):
            self._seen = max(self._seen, 0)
            return True
        quiet, self._seen, self._looked = read == self._seen, read, time.monotonic()
        return quiet

    def cut(self) -> None:
        """End the blocked read: shut the read side of the request's connection."""
        try:
            with socket.socket(fileno=socket.dup(self.fd)) as connection:
                connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # the connection is gone already


NO_WAIT = BodyWait(None, -1)


class SpareThreads:
    """``count`` threads parked out of uWSGI's turn until slow bodies need them.

    A thread parks in :meth:`_park`, the handler of :data:`PARK_SIGNAL`, which uWSGI runs on
    whichever thread is waiting for a connection; :meth:`keep` says how many to keep parked and
    asks the master for as many signals as are missing.
    """

    def __init__(self, count: int, request_threads: int):
        self.count = count
        self._gone_at_stop = max(min(STOP_THREADS_GONE, request_threads), 1)
        self._changed = threading.Condition()
        self._parked = 0
        self._wanted = 0
        self._asked = 0  # signals sent whose handler has not run yet
        self._asked_at = 0.0
        self._stopping = False
        self._most_threads = 0

    def register(self) -> bool:
        """Install the handler in this worker; False outside uWSGI or without its master."""
        try:
            uwsgi.register_signal(PARK_SIGNAL, "worker", self._park)
        except (AttributeError, ValueError):
            return False
        return True

    @property
    def parked(self) -> int:
        return self._parked

    def _park(self, _signum: int) -> None:
        with self._changed:
            self._asked = max(self._asked - 1, 0)
            if self._parked >= self._wanted:
                return  # not needed (any more, or the signal was another worker's)
            self._parked += 1
            back_by = time.monotonic() + PARK_S
            try:
                while self._parked <= self._wanted and (left := back_by - time.monotonic()) > 0:
                    self._changed.wait(left)
            finally:
                self._parked -= 1

    def keep(self, parked: int, now: float) -> None:
        """Keep ``parked`` threads parked: let the surplus go, ask for the missing."""
        with self._changed:
            if self._stopping:
                return
            if parked < self._wanted:
                self._changed.notify_all()
            self._wanted = parked
            if self._asked and now - self._asked_at > PARK_ASKED_S:
                self._asked = 0
            missing = parked - self._parked - self._asked
            if missing > 0:
                self._asked += missing
                self._asked_at = now
        for _ in range(missing):
            uwsgi.signal(PARK_SIGNAL)

    def release(self) -> None:
        """Let every parked thread go, and park none again: the worker stops."""
        with self._changed:
            self._stopping = True
            self._wanted = 0
            self._changed.notify_all()

    def notice_stop(self) -> None:
        """Release the parked threads once the worker's other threads have begun to end."""
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            return  # then parked threads come back within PARK_S
        self._most_threads = max(self._most_threads, threads)
        if threads <= self._most_threads - self._gone_at_stop:
            self.release()


class BodyDeadlines:
    """A thread that cuts off bodies still arriving ``timeout`` seconds after their wait began,
    and keeps the spare threads parked that no slow body needs."""

    def __init__(self, timeout: float, spares: SpareThreads | None = None, body_threads: int | None = None):
        self.timeout = timeout
        self._spares = spares
        self._body_threads = body_threads  # more bodies than this arriving slowly: the oldest are due at once
        self._waits: dict[int, BodyWait] = {}  # by connection fd: a connection reads one body at a time
        self._lock = threading.Lock()  # a wait is finished or cut, never both
        self._stopped = False
        self._wake = threading.Event()
        self._idle = False  # asleep for IDLE_S: the next wait wakes it (watch)
        self._last_watch = 0.0
        self._last_stop_check = 0.0
        self._thread = threading.Thread(target=self._run, name="inferwatch-body-deadlines", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._spares is not None:
            self._spares.release()
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
        self._last_watch = wait.began
        if self._idle:
            self._idle = False
            self._wake.set()

    def finish(self, wait: BodyWait) -> bool:
        with self._lock:
            if self._waits.get(wait.fd) is wait:
                del self._waits[wait.fd]
            return wait.expired

    def _run(self) -> None:
        pause = IDLE_S
        while not self._stopped:
            self._wake.wait(pause)
            self._wake.clear()
            try:
                pause = self.check(time.monotonic())
            except Exception:  # noqa: BLE001 - the deadlines must outlive any one bad check
                log.exception("checking the body deadlines failed")
                pause = IDLE_S

    def check(self, now: float) -> float:
        """Cut off the bodies that are due, keep the spares parked that no slow body needs; the
        seconds until the next check is needed."""
        waits = list(self._waits.values())
        slow = sorted((wait for wait in waits if now - wait.began > SLOW_S), key=lambda wait: wait.began)
        crowded = 0 if self._body_threads is None else max(len(slow) - self._body_threads, 0)
        for wait in slow[:crowded]:
            if now < wait.deadline:  # more slow bodies than their threads: the oldest are due now
                wait.deadline, wait.crowded = now, True
        pause = min(IDLE_S, self.timeout)  # a wait that begins now is due after timeout
        for wait in waits:
            if now < wait.deadline:
                if now - wait.began > SLOW_S:
                    wait.watch_progress()  # so that its first quiet tick, once due, can be told
                pause = min(pause, wait.deadline - now)
            elif not wait.watched() or not wait.looked_within(2 * TICK_S, now):
                # Look again, and judge one tick from now: no byte over a long stretch would mean
                # the client's next byte is near, the worst moment to cut.
                wait.watch_progress() if not wait.watched() else wait.quiet()
                pause = TICK_S
            elif not wait.quiet() and now < wait.deadline + QUIET_GRACE_S:
                pause = TICK_S  # a byte came since the last look: wait for a quiet tick
            else:
                with self._lock:
                    if self._waits.get(wait.fd) is wait:  # not finished meanwhile: the fd is still its connection
                        del self._waits[wait.fd]
                        wait.expired = True
                        wait.cut()
        if self._spares is not None:
            self._spares.keep(max(self._spares.count - len(slow), 0), now)
            if now - self._last_stop_check >= IDLE_S:
                self._last_stop_check = now
                self._spares.notice_stop()
            if waits or now - self._last_watch < IDLE_S:
                pause = min(pause, SLOW_S)  # a body may turn slow: look every SLOW_S
        if pause >= IDLE_S:
            self._idle = True
        return max(pause, TICK_S)


def begin(environ: dict) -> BodyWait:
    """The body's wait has begun; call :meth:`BodyWait.end` once its read is over."""
    deadlines: BodyDeadlines | None = environ.get(DEADLINES)
    if deadlines is None or uwsgi is None:
        return NO_WAIT
    wait = BodyWait(deadlines, uwsgi.connection_fd())
    deadlines.watch(wait)
    return wait
