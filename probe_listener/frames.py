"""Reading a subscription's frames bounded in size and in time, and joining continuations.

websocket-client reads a frame whole, whatever length it announces, and blocks as long as a peer
drips it; these two keep a message within `max_message_bytes` and give the loop its thread back at
a deadline, so that pings and heartbeats go on however a peer splits or drips a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import websocket
from websocket._abnf import ABNF, frame_buffer


class FrameTooLarge(websocket.WebSocketException):
    """A message above MAX_MESSAGE_BYTES (announced by one frame, or by continuations adding up)."""


class BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame by its announced length before reading it
    (with the continuations before it counted in), and giving the loop back its thread at a
    deadline however slowly a peer drips a frame (what it read so far is kept for the next call)."""

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool, max_bytes: int) -> None:
        super().__init__(self._recv_until_deadline, skip_utf8_validation)
        self._raw_recv = recv_fn
        self.max_bytes = max_bytes
        self.deadline: float | None = None  # monotonic; None: no deadline (the handshake, the close)
        self.pending: Callable[[], int] = lambda: 0  # bytes of the message being assembled

    def _recv_until_deadline(self, bufsize: int) -> bytes:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise websocket.WebSocketTimeoutException("read deadline")
        return self._raw_recv(bufsize)

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length + self.pending() > self.max_bytes:
            size = self.length + self.pending()
            raise FrameTooLarge(f"a message of at least {size} bytes (limit {self.max_bytes})")


class Assembler:
    """Joins a message's continuation frames, at most `max_bytes` in all, in linear time."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._opcode: int | None = None
        self._data = bytearray()

    def pending(self) -> int:
        return len(self._data)

    def add(self, frame: ABNF) -> tuple[bytes, bool] | None:
        """The whole message (payload, binary) once its last frame is in, else None."""
        if frame.opcode == ABNF.OPCODE_CONT:
            if self._opcode is None:
                raise websocket.WebSocketProtocolException("a continuation frame with no message begun")
        elif self._opcode is not None:
            raise websocket.WebSocketProtocolException("a new message before the last one ended")
        else:
            self._opcode = frame.opcode
        if len(self._data) + len(frame.data) > self.max_bytes:
            size = len(self._data) + len(frame.data)
            self._opcode, self._data = None, bytearray()
            raise FrameTooLarge(f"a message of at least {size} bytes in continuation frames (limit {self.max_bytes})")
        if not frame.fin:
            self._data += frame.data
            return None
        binary = self._opcode == ABNF.OPCODE_BINARY
        payload = bytes(self._data) + frame.data if self._data else bytes(frame.data)
        self._opcode, self._data = None, bytearray()
        return payload, binary


def close_code(data: bytes) -> int | None:
    """The status code a close frame carries, or None (a close frame may carry none)."""
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
