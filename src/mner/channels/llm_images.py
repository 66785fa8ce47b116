"""The images ``mner ask-llm --image`` sends with posts: each read only from a regular file (never a FIFO, a
device or a folder, which could block or never end), at most ``MAX_IMAGE_BYTES``, one of the formats vision
endpoints take, encoded once as base64 (the one copy a request holds, in memory given back to the system when it
is freed); and ``ByteBudget``, which bounds the image bytes all requests in flight hold together, whatever the
concurrency."""

from __future__ import annotations

import base64
import mmap
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from mner.channels.llm import EncodedImage, LLMError

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # an image sent with a post
MAX_IMAGE_BYTES_IN_FLIGHT = 2 * MAX_IMAGE_BYTES  # the image bytes all requests in flight hold at once
BLOCK = (
    3 * 32 * 1024
)  # read and encoded at a time: a multiple of 3 (no padding inside), under malloc's mmap threshold
IMAGE_TYPES = {  # the formats vision endpoints take, by their first bytes
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
}


class ImageFile:
    """An image file opened for sending: ``size`` known before a byte is read (to reserve it in a
    ``ByteBudget``), ``encoded()`` reads and encodes it. A context manager: the file is closed on leaving.

    Raises:
        LLMError: the path cannot be opened, is not a regular file, or is over ``MAX_IMAGE_BYTES``.
    """

    def __init__(self, path: str | Path):
        self.path = path
        try:  # O_NONBLOCK: opening a FIFO without a writer returns at once (and is refused below)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            raise LLMError(f"image {path}: cannot read ({err.strerror or err})") from None
        info = os.fstat(fd)
        mode, self.size = info.st_mode, info.st_size
        self.file = os.fdopen(fd, "rb", buffering=0) if stat.S_ISREG(mode) else None
        if self.file is None:
            os.close(fd)
            raise LLMError(
                f"image {path}: not a regular file ({_FILE_KINDS.get(stat.S_IFMT(mode), 'not a file')})"
            )
        if self.size > MAX_IMAGE_BYTES:
            self.close()
            raise LLMError(f"image {path}: over {MAX_IMAGE_BYTES:,} bytes, the most sent with a post")

    def encoded(self) -> EncodedImage:
        """The image, checked to be a JPEG, PNG, GIF or WebP, in base64: encoded a block at a time into memory of
        its own (an anonymous mmap, given back to the system as soon as it is freed: the allocator of the
        thread that read it keeps nothing of it).

        Raises:
            LLMError: it cannot be read, changed while read, or is none of those formats.
        """
        block = self._read()
        kind = next((t for magic, t in IMAGE_TYPES.items() if block.startswith(magic)), None)
        if kind is None and block[:4] == b"RIFF" and block[8:12] == b"WEBP":
            kind = "image/webp"
        if kind is None:
            raise LLMError(f"image {self.path}: not a JPEG, PNG, GIF or WebP file")
        out = mmap.mmap(-1, 4 * ((self.size + 2) // 3))
        read = written = 0
        while block:
            read += len(block)
            if read > self.size:
                break
            data = base64.b64encode(block)
            out[written : written + len(data)] = data
            written += len(data)
            block = self._read()
        if read != self.size:
            raise LLMError(
                f"image {self.path}: changed while it was read ({read:,} bytes, not {self.size:,})"
            )
        return EncodedImage(kind, out)

    def _read(self) -> bytes:
        """The next ``BLOCK`` bytes (fewer at the end only)."""
        data = b""
        try:
            while len(data) < BLOCK and (more := self.file.read(BLOCK - len(data))):
                data += more
        except OSError as err:
            raise LLMError(f"image {self.path}: cannot read ({err.strerror or err})") from None
        return data

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ByteBudget:
    """At most ``limit`` bytes held at once by all threads together: ``hold(n)`` waits until they fit (one
    holding more than the limit alone waits until nothing else is held). Each thread holds one at a time."""

    def __init__(self, limit: int = MAX_IMAGE_BYTES_IN_FLIGHT):
        self.limit, self.held = limit, 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.held == 0 or self.held + size <= self.limit)
            self.held += size
        try:
            yield
        finally:
            with self._changed:
                self.held -= size
                self._changed.notify_all()
