"""A minimal keep-alive HTTP/1.1 JSON client on asyncio streams, for load generation.

The load generator shares the machine with the server it measures; httpx spends about
1.3 ms of CPU per small request here, which on a 2-core machine is CPU the server
cannot use. This client does one write and a header parse per request (a few tens
of microseconds), so the numbers describe the server, not the client. It speaks just
enough HTTP for our JSON endpoints: Content-Length bodies, no chunked encoding.
"""

import asyncio
import json
from typing import Any, Tuple
from urllib.parse import urlsplit


class RawConnection:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._reader: Any = None
        self._writer: Any = None

    async def post_json(self, path: str, body: Any) -> Tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        self._writer.write(head.encode() + payload)
        status_line = await self._reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
