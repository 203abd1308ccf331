"""Readers for the IDX format of the original MNIST files (gzip-compressed or not).

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
data in C order (big-endian for multi-byte types). MNIST images have magic ``0x00000803``
(uint8, 3 dims: N x 28 x 28) and labels ``0x00000801`` (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from medshield.data.base import DataError

__all__ = ["read_bytes", "parse_idx", "read_idx"]

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip-compressed (by magic ``1f 8b``).

    Raises
    ------
    DataError
        When the file cannot be read or the gzip stream is corrupt or truncated.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DataError(
                f"{path} ends in .gz but is not a gzip file (first bytes {raw[:4]!r}); "
                "the download is probably broken (an HTML error page?): download it again"
            )
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({err}); download it again"
        ) from err


def parse_idx(raw: bytes, path: Path | str, *, expect_magic: int | None = None) -> np.ndarray:
    """Parse IDX bytes into an array (native byte order).

    Parameters
    ----------
    raw
        The uncompressed file content.
    path
        Used in error messages only.
    expect_magic
        The required magic number (``0x803`` for MNIST images, ``0x801`` for labels).

    Raises
    ------
    DataError
        Wrong magic number, unknown dtype code, or a length that does not match the header.
    """
    if len(raw) < 4:
        raise DataError(f"{path} is too short ({len(raw)} bytes) to be an IDX file")
    magic = int.from_bytes(raw[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x} (expected 0x{expect_magic:08x}); "
            "this is not the expected MNIST file (images and labels swapped, or not an IDX "
            "file at all): use the original LeCun files"
        )
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: invalid IDX header 0x{magic:08x}; not an IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; the file is truncated or corrupt: download it again"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed); see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), path, expect_magic=expect_magic)
