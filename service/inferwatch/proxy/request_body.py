"""Reading a prediction's request body: the size limit, ``Expect: 100-continue``, chunked bodies, slow clients.

uWSGI hands the app a request as soon as its headers are complete; the body is read here, so that:

* a body over ``max_body_bytes`` is answered 413 from its Content-Length before any of it is read,
  and a client that sent ``Expect: 100-continue`` gets that 413 instead of the ``100 Continue``,
  so it never sends the body;
* a client that sent ``Expect: 100-continue`` with an acceptable body gets ``100 Continue`` just
  before the body is read (its connection then closes after the answer: uWSGI's router takes the
  interim answer for the final one and keeps no keep-alive);
* a ``Transfer-Encoding: chunked`` body (no Content-Length) is decoded, up to the limit; a
  request with both headers, or with another transfer coding, is refused (400);
* a client that sends nothing for ``client_timeout`` seconds in the middle of its body, or whose
  body is not in full ``body_timeout`` seconds after its headers, is answered 408
  ``client_timeout``; one whose body ends before its Content-Length 400 ``incomplete_body``.

Each blocking body read runs under the body's deadline (:mod:`inferwatch.proxy.body_deadline`).

What a request leaves unread is read and thrown away, for ``client_timeout`` seconds at most:

* a body over the limit after its 413 has gone out (:class:`DiscardAfterAnswer`): the client reads
  its answer while it is still sending, and the connection closes cleanly instead of with a reset;
* any other unread body (a 404, 405 or 415 is answered without reading it) before the answer goes
  out (:func:`discard_unread`), so the keep-alive connection is ready for the next request when the
  client gets its answer. uWSGI's router loses a request that arrives on a connection whose
  previous answer the worker has sent but not yet finished: discarding after the answer made
  2-3 % of the next requests fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from inferwatch.proxy import body_deadline, errors

try:
    import uwsgi  # present only inside uWSGI
except ImportError:
    uwsgi = None

# environ keys this module sets on a request.
BODY_READ = "inferwatch.body_read"
CONTINUE_SENT = "inferwatch.continue_sent"
ANSWER_FIRST = "inferwatch.answer_first"  # the body is over the limit: answer, then discard, then close

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
DISCARD_READ_BYTES = 65536


def declared_length(environ: dict) -> int | None:
    """The Content-Length, or None for a chunked body; raises ProxyError for a bad header."""
    text = environ.get("CONTENT_LENGTH") or ""
    coding = environ.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
    if coding:
        if coding != "chunked":
            raise errors.invalid_input(f"Transfer-Encoding {coding!r} is not supported; send chunked or a Content-Length")
        if text:
            raise errors.invalid_input("send either Content-Length or Transfer-Encoding: chunked, not both")
        return None
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise errors.invalid_input(f"Content-Length {text!r} is not a number of bytes")
    return int(text)


def too_large(environ: dict, limit: int) -> errors.ProxyError:
    """The 413 for a body over ``limit``; what is left of the body is discarded after it."""
    environ[ANSWER_FIRST] = True
    return errors.payload_too_large(limit)


def read_body(environ: dict, length: int | None, limit: int, timeout: float) -> bytes:
    """The whole body (``length`` from :func:`declared_length`, already checked against ``limit``)."""
    _send_continue(environ)
    try:
        body = _read_chunked(environ, limit, timeout) if length is None else _read_exact(environ, length, timeout)
    except errors.ProxyError as error:
        # A client that went silent or away has nothing left worth waiting for; one over the
        # limit is still sending, and what it sends is discarded after the answer.
        environ[BODY_READ] = error.outcome is not errors.PredictionOutcome.PAYLOAD_TOO_LARGE
        raise
    environ[BODY_READ] = True
    return body


def _send_continue(environ: dict) -> None:
    if uwsgi is not None and environ.get("HTTP_EXPECT", "").lower() == "100-continue":
        try:
            os.write(uwsgi.connection_fd(), CONTINUE)
        except OSError:
            return  # the client has gone: reading its body says so
        environ[CONTINUE_SENT] = True


def _read_exact(environ: dict, length: int, timeout: float) -> bytes:
    if length == 0:
        return b""
    body, failure = b"", ""
    wait = body_deadline.begin(environ)
    try:
        body = environ["wsgi.input"].read(length)
    except OSError as error:  # uWSGI: "timeout during read(...)" or "error during read(...)"
        failure = str(error) or "error"
    finally:
        cut = wait.end()  # a deadline that passed as the last byte came changes nothing: the body is in
    if failure:
        if cut:
            raise errors.body_timeout(wait.timeout, wait.crowded)
        if "timeout" in failure:
            raise errors.client_timeout(timeout)
        raise errors.incomplete_body(f"the request body ended before its Content-Length of {length} bytes")
    if len(body) < length:
        raise errors.incomplete_body(f"the request body ended after {len(body)} of its {length} bytes")
    return body


def _read_chunked(environ: dict, limit: int, timeout: float) -> bytes:
    if uwsgi is None:  # another server has decoded the chunks already
        if not environ.get("wsgi.input_terminated"):
            raise errors.invalid_input("send a Content-Length: this server cannot read chunked bodies")
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise too_large(environ, limit)
        return body
    wait = body_deadline.begin(environ)
    try:
        return _chunks(environ, limit, timeout, wait)
    finally:
        wait.end()


def _chunks(environ: dict, limit: int, timeout: float, wait: body_deadline.BodyWait) -> bytes:
    parts, size = [], 0
    while True:
        began = time.monotonic()
        try:
            chunk = uwsgi.chunked_read(int(timeout))
        except OSError:
            if wait.expired:
                raise errors.body_timeout(wait.timeout, wait.crowded) from None
            if time.monotonic() - began >= int(timeout):
                raise errors.client_timeout(timeout) from None
            raise errors.incomplete_body(
                f"the chunked request body ended early, is malformed, or has a chunk over {limit} bytes"
            ) from None
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise too_large(environ, limit)
        parts.append(chunk)


def closing_when_needed(environ: dict, start_response: Callable) -> Callable:
    """``start_response`` that adds ``Connection: close`` when uWSGI's router will close anyway.

    The router keeps no keep-alive after a request with a Transfer-Encoding, an interim
    ``100 Continue``, or a body left unsent (``Expect: 100-continue`` answered without the 100);
    saying so stops a client from sending its next request on a connection that is about to close.
    """
    def start(status: str, headers: list, exc_info=None):
        if "HTTP_TRANSFER_ENCODING" in environ or environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            if not any(name.lower() == "connection" for name, _ in headers):
                headers = [*headers, ("Connection", "close")]
        return start_response(status, headers, exc_info)

    return start


def has_unread_body(environ: dict) -> bool:
    if environ.get(BODY_READ):
        return False
    if environ.get("HTTP_EXPECT", "").lower() == "100-continue" and not environ.get(CONTINUE_SENT):
        return False  # the client waits for a 100 it never got: it sends nothing
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def discard_unread(environ: dict, timeout: float) -> None:
    """Read and throw away the rest of the body, for ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    stream = environ.get("wsgi.input")
    wait = body_deadline.begin(environ)
    try:
        while time.monotonic() < deadline:
            if chunked:
                if uwsgi is None or not uwsgi.chunked_read(max(1, int(deadline - time.monotonic()))):
                    return
            elif stream is None or not stream.read(DISCARD_READ_BYTES):
                return
    except (OSError, ValueError):
        pass  # the client has gone, or stopped sending: nothing left to keep clean
    finally:
        wait.end()


class DiscardAfterAnswer:
    """A WSGI response that, once the server has sent it, discards what is left of the request body."""

    __slots__ = ("_response", "_environ", "_timeout")

    def __init__(self, response: Iterable[bytes], environ: dict, timeout: float):
        self._response = response
        self._environ = environ
        self._timeout = timeout

    def __iter__(self):
        return iter(self._response)

    def close(self) -> None:
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            discard_unread(self._environ, self._timeout)
