"""A WebSocket client on a plain socket, for tests that must misbehave on purpose.

Library clients read what the server sends (and answer its pings) on their own;
a client that floods the server *without reading* or sends frames no library
would build (oversized, deeply nested) needs the bytes on the wire itself.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

GUARD_SECONDS = 15.0  # a guard against a hang, not a latency assertion

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9


def client_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """One final, masked frame (clients must mask; RFC 6455 section 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def open_raw(port: int, path: str) -> socket.socket:
    """Connect and complete the upgrade; the socket is left right after the 101 head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_SECONDS)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise AssertionError(f"no upgrade: {head!r}")
    return sock


class FrameReader:
    """Server frames (unmasked) read off a raw socket, one at a time.

    Keeps a read position instead of slicing the buffer per frame: a test may read
    hundreds of thousands of small frames.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.position = 0

    def _fill(self, size: int) -> bool:
        """At least ``size`` unread bytes buffered; False once the server closed TCP."""
        while len(self.buffer) - self.position < size:
            if self.position:
                del self.buffer[: self.position]
                self.position = 0
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return False  # closed by the server, its unread input still queued (RST)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[self.position : self.position + size])
        self.position += size
        return data

    def next(self) -> tuple[int, bytes] | None:
        """The next frame's opcode and payload; None once the server closed TCP."""
        if not self._fill(2):
            return None
        first, second = self._take(2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            if not self._fill(2):
                return None
            length = struct.unpack(">H", self._take(2))[0]
        elif length == 127:
            if not self._fill(8):
                return None
            length = struct.unpack(">Q", self._take(8))[0]
        if not self._fill(length):
            return None
        return opcode, self._take(length)

    def next_data(self) -> tuple[int, bytes] | None:
        """The next frame that is not a protocol ping (the server's keep-alive)."""
        while True:
            frame = self.next()
            if frame is None or frame[0] != OPCODE_PING:
                return frame


def close_code(payload: bytes) -> int:
    return int(struct.unpack(">H", payload[:2])[0])
