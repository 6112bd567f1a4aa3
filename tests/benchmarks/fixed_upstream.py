"""FixedAnswerUpstream: a benchmark-only stand-in for the model server that answers every
prediction with the same body, so that the proxy, not the model, is what saturates.

Used by ``bench_proxy.py`` to measure the proxy's own ceiling with 1, 2 and 4 workers: one MLflow
worker saturates first on two cores (about 240 predictions/s), long before the proxy does. It is
never used by the tests, which run against the real ``mlflow models serve``.

It speaks just enough HTTP/1.1 for the proxy's upstream client: keep-alive connections,
``Content-Length`` bodies (read and thrown away), ``POST /invocations`` answered
``{"predictions": [0]}`` (or ``--answer``'s body) and ``GET /ping`` answered 200, in one asyncio
process whose CPU per request is a small fraction of the proxy's (the benchmark reports both)::

    python tests/benchmarks/fixed_upstream.py --port 5006 [--answer '{"predictions": [[0.8, 0.2]]}']
"""

from __future__ import annotations

import argparse
import asyncio

BODY = b'{"predictions": [0]}'
# A chat completion (profile_request.py --chat passes it as --answer) as MLflow's GenAI models answer one, with usage.
CHAT_BODY = (b'{"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "echo-llm-1", '
             b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "echo: hello there"}, '
             b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}')


def responses(body: bytes) -> dict[bytes, bytes]:
    return {
        b"/invocations": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
        b"/ping": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    }


RESPONSES = responses(BODY)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class FixedAnswerUpstream(asyncio.Protocol):
    """One connection: parses pipelined requests out of the byte stream, answers each."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still arriving
            del self.buffer[: end + 4 + length]
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            self.transport.write(RESPONSES.get(path, NOT_FOUND))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FixedAnswerUpstream, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", default=BODY.decode(), help="the JSON body every prediction is answered")
    args = parser.parse_args()
    RESPONSES.update(responses(args.answer.encode()))
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
