"""A bare HTTP/1.1 client over a real socket, for what httpx and aiohttp will not do on purpose:
send a body in several writes with pauses between them (as TCP segments arrive on real networks),
in chunked transfer-encoding, with raw header bytes, or not finish the request at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def send_in_pieces(
    base_url: str,
    path: str,
    pieces: Sequence[bytes],
    *,
    headers: dict[str, str] | None = None,
    raw_headers: Sequence[bytes] = (),
    gap_s: float = 0.05,
    chunked: bool = False,
    within_s: float = 10.0,
) -> RawResponse:
    """POST the concatenation of ``pieces``, one write per piece and ``gap_s`` between writes.

    With ``chunked`` every piece is one chunk of a ``Transfer-Encoding: chunked`` body;
    otherwise ``Content-Length`` announces the whole body. ``raw_headers`` are sent as they are
    (``b"Name: value"``, any bytes).
    """
    host, port = _host_port(base_url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"POST {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(), b"Connection: close"]
        head += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        head += list(raw_headers)
        if chunked:
            head.append(b"Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {sum(len(p) for p in pieces)}".encode())
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(gap_s)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            await asyncio.sleep(gap_s)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), within_s)
    finally:
        writer.close()
    return parse_response(raw)


def parse_response(raw: bytes) -> RawResponse:
    """Status, headers and (de-chunked) body of one HTTP/1.1 response read to EOF."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1."):
        raise AssertionError(f"not an HTTP response: {raw[:200]!r}")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawResponse(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


async def seconds_until_closed(base_url: str, opening: bytes = b"", *, within_s: float = 10.0) -> float:
    """Open a connection, send ``opening`` (maybe nothing, maybe half a request), then wait.

    Returns how long the server took to close the connection (EOF, or a reset).
    """
    host, port = _host_port(base_url)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    started = loop.time()
    try:
        if opening:
            writer.write(opening)
            await writer.drain()
        try:
            async with asyncio.timeout(within_s):
                while await reader.read(4096):
                    pass
        except ConnectionResetError:
            pass
        return loop.time() - started
    finally:
        writer.close()


def _host_port(base_url: str) -> tuple[str, int]:
    hostport = base_url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)
