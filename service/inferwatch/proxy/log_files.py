"""The inference log's files: JSON Lines of one process, rotated by size and age.

Each proxy process (each uWSGI worker) writes files of its own in the log directory, named
``inference-<UTC time it was opened>-<host>-<pid>-<sequence>.jsonl``, so several workers, or
several proxies sharing a volume, never write to one file, and the names sort by time. A file is
closed, and the next one opened, before a write would take it past ``max_bytes`` or once it is
``max_age`` seconds old: a file that is no longer the newest of its process is complete, and can
be shipped or removed. Files are created with mode 0640 (the directory, when the proxy creates
it, 0750): they hold what clients sent.

A file only ever holds whole lines. Each batch is one ``write`` to a file opened for appending;
when the disk fills in the middle of a batch, the file is cut back to its last complete line and
the records that did not fit are reported as not written (the caller counts them as dropped). A
process that is killed leaves files of whole lines, apart from a last line cut short in the rare
case the kill came in the middle of a partial write; readers skip such a line.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path

from inferwatch.contract.inference_log import FILE_PREFIX, FILE_SUFFIX

log = logging.getLogger(__name__)

FILE_MODE = 0o640
DIRECTORY_MODE = 0o750
WARN_EVERY_S = 60.0


def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:64] or "host"


class RollingFiles:
    """The current file of this process in ``directory``, and the rotation to the next."""

    def __init__(self, directory: str | Path, max_bytes: int, max_age: float) -> None:
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._host = _host_name()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._sequence = 0
        self._warned = -WARN_EVERY_S

    @property
    def path(self) -> Path | None:
        """The file being written, if one is open."""
        return self._path

    def tick(self, now: float) -> None:
        """Close the current file once it is ``max_age`` old (the next write opens a new one)."""
        if self._fd is not None and now - self._opened >= self._max_age:
            self.close()

    def write(self, lines: list[bytes], now: float) -> int:
        """Append ``lines`` (each ending in a newline); returns how many were written whole.

        Raises nothing: an error (a full disk, a directory that cannot be created) is logged and
        the lines from the first one not written on are left out of the count.
        """
        written = 0
        chunk: list[bytes] = []
        chunk_bytes = 0
        try:
            for line in lines:
                if self._size + chunk_bytes + len(line) > self._max_bytes and (chunk or self._size):
                    if chunk:
                        written += self._append(chunk, now)
                        chunk, chunk_bytes = [], 0
                    self.close()
                chunk.append(line)
                chunk_bytes += len(line)
            if chunk:
                written += self._append(chunk, now)
        except _PartialWrite as partial:
            written += partial.lines
            self._warn(partial.cause, now)
        except OSError as error:
            self._warn(error, now)
        return written

    def _warn(self, error: OSError, now: float) -> None:
        """One warning a minute at most: a full disk fails every batch."""
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("inference log: cannot write in %s: %s; records are dropped (inference_log_dropped_total)",
                        self.directory, error.strerror or error)

    def _append(self, chunk: list[bytes], now: float) -> int:
        if self._fd is not None and now - self._opened >= self._max_age:
            self.close()
        if self._fd is None:
            self._open(now)
        data = b"".join(chunk)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:] if done else data)
        except OSError as error:
            whole = data.rfind(b"\n", 0, done) + 1  # bytes of the complete lines that made it
            if whole < done:
                try:
                    os.ftruncate(self._fd, self._size + whole)
                except OSError:
                    pass
            self._size += whole
            raise _PartialWrite(data.count(b"\n", 0, whole), error) from None
        self._size += done
        return len(chunk)

    def _open(self, now: float) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        path = self.directory / f"{FILE_PREFIX}{stamp}-{self._host}-{os.getpid()}-{self._sequence:04d}{FILE_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        self._path = path
        self._size = 0
        self._opened = now

    def close(self) -> None:
        """Close the current file (its data is flushed to the disk first)."""
        if self._fd is None:
            return
        fd, self._fd, self._path, self._size = self._fd, None, None, 0
        try:
            os.fsync(fd)
        except OSError:
            pass
        os.close(fd)


class _PartialWrite(Exception):
    """A write that stopped, for ``cause``, after ``lines`` whole lines."""

    def __init__(self, lines: int, cause: OSError) -> None:
        super().__init__(str(cause))
        self.lines = lines
        self.cause = cause
