"""Reading a small file named by the configuration, bounded.

A path in the configuration can name anything: a FIFO nobody writes to (an open or a read that
blocks for good), a device such as /dev/zero (a read that never ends), a directory, or a file far
larger than any setting. Each is one clear error here, at once, and never more than `limit` + 1
bytes are read. The file is checked on the descriptor that is read, so nothing can be swapped in
between the check and the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotSmallFile(ValueError):
    """The path names no regular file of at most the limit; str() says which (never a byte of it)."""


def read_small(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Raises NotSmallFile for anything else,
    OSError when it cannot be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once, to be refused
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotSmallFile("not a regular file")
        data = bytearray()
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise NotSmallFile(f"larger than {limit} bytes")
        return bytes(data)
    finally:
        os.close(fd)
