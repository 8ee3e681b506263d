"""Reading and writing IDX files (the MNIST format), with checks that name the file.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data. Only unsigned bytes
(type code 0x08) occur in MNIST-style image datasets. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from vae_jax.errors import DataError

UNSIGNED_BYTE = 0x08
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


class IdxError(DataError):
    """A missing, truncated or malformed IDX file; the message names the file."""


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise IdxError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise IdxError(f"{path}: not a complete gzip file ({error}); re-download it") from error


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes into an array of the shape its header gives."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or ndim == 0:
        raise IdxError(
            f"{path}: bad magic number 0x{data[:4].hex()} (expected 0x0000 08 0N), not an IDX file"
        )
    if type_code != UNSIGNED_BYTE:
        raise IdxError(f"{path}: IDX type code 0x{type_code:02x} unsupported (expected 0x08)")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxError(f"{path}: truncated header ({len(data)} of {header_size} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    found = len(data) - header_size
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise IdxError(
            f"{path}: {kind}: header says shape {shape} ({expected} bytes), file has {found}"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzip-compressed if the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def split_file(idx_dir: str | Path, split: str, kind: str) -> Path:
    """The IDX file of ``kind`` ('images' or 'labels') for ``split``, compressed or not.

    Files are named as MNIST distributes them, e.g. ``train-images-idx3-ubyte.gz`` and
    ``t10k-labels-idx1-ubyte``.
    """
    if split not in SPLIT_PREFIXES:
        raise IdxError(f"no IDX split {split!r}; IDX folders hold {sorted(SPLIT_PREFIXES)}")
    rank = 3 if kind == "images" else 1
    stem = f"{SPLIT_PREFIXES[split]}-{kind}-idx{rank}-ubyte"
    for candidate in (Path(idx_dir) / f"{stem}.gz", Path(idx_dir) / stem):
        if candidate.exists():
            return candidate
    raise IdxError(f"{Path(idx_dir) / stem}.gz not found (nor without .gz)")


def read_split(idx_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W, 1)`` uint8 and labels ``(N,)`` int64 of one split, checked."""
    images_path = split_file(idx_dir, split, "images")
    labels_path = split_file(idx_dir, split, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise IdxError(f"{images_path}: expected 3 dimensions (N, H, W), header has {images.ndim}")
    if labels.ndim != 1:
        raise IdxError(f"{labels_path}: expected 1 dimension (N,), header has {labels.ndim}")
    if len(images) != len(labels):
        raise IdxError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise IdxError(f"{images_path}: contains no images")
    return images[..., None], labels.astype(np.int64)
