"""uvicorn's HTTP protocol with a deadline and a size cap on the request head.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not a client that
sends half a request line or its headers a byte at a time: such a connection is held open
for as long as the client likes. :class:`BoundedHttpProtocol` closes a connection whose
request head is not complete within ``LEDGERLINE_SERVING_HEADER_TIMEOUT_SECONDS`` and
answers 431 to a head larger than ``LEDGERLINE_SERVING_MAX_HEADER_BYTES``. (Request bodies
have their own deadline in the routes that read them.) The limits come from the
environment because uvicorn builds one protocol object per connection, in every worker
process, from a class named by an import string.

``ledgerline serve`` selects it with ``http="serving.http_limits:BoundedHttpProtocol"``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_ENV = "LEDGERLINE_SERVING_HEADER_TIMEOUT_SECONDS"
HEADER_BYTES_ENV = "LEDGERLINE_SERVING_MAX_HEADER_BYTES"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_HEADER_BYTES = 64 * 1024


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


class BoundedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose request heads must arrive in time and within a size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = _env_number(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT)
        self.max_header_bytes = int(_env_number(HEADER_BYTES_ENV, DEFAULT_HEADER_BYTES))
        self._head_timer: asyncio.TimerHandle | None = None
        self._read_bytes = 0  # bytes read while the head is incomplete
        self._parsed_bytes = 0  # request line and headers the parser handed over
        self._in_head = False
        self._rejected = False

    def _start_head(self) -> None:
        self._in_head = True
        self._read_bytes = self._parsed_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is not None and not self.transport.is_closing():
            logger.info("closed a connection from %s: its request head did not arrive within %.0fs", self.client, self.header_timeout)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # the first request's head; later ones start in on_message_begin

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.transport.is_closing():
            return
        self._rejected = False
        if not self._in_head:
            self._start_head()

    # the head's size is counted twice: per parsed piece (a head that arrives whole in one read)
    # and per read (a head still incomplete, which the parser has not handed over yet)
    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        if not self._rejected:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if not self._rejected:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head()
        if not self._rejected:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._rejected:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._read_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._read_bytes > self.max_header_bytes:  # all of it head, and still no end
            self._reject_head()

    def _count_head(self, n: int) -> None:
        self._parsed_bytes += n
        if self._parsed_bytes > self.max_header_bytes:
            self._reject_head()

    def _reject_head(self) -> None:
        if self._rejected:
            return
        self._rejected = True
        self._end_head()
        if self.transport is not None and not self.transport.is_closing():
            logger.info("refused a request head of more than %d bytes from %s", self.max_header_bytes, self.client)
            self._send_431()

    def _send_431(self) -> None:
        body = b'{"detail":"the request line and headers are too large; send smaller headers"}'
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()
