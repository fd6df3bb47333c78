"""Zip archives read within bounds: DICOM series zips and NumPy ``.npz`` files.

A zip says in its central directory how many members it holds and how large each one
unpacks; :func:`open_zip` checks both against :data:`MAX_MEMBERS` and
:data:`MAX_UNPACKED_BYTES` before anything is read, and refuses what is not a zip at all (a
``.npy`` renamed ``.npz``, random bytes) with one line instead of ``BadZipFile``.
:func:`read_member` then decompresses a member with a bounded reader, so a member whose
stream unpacks to more than it declares is refused instead of trusted.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

from tfganaug.errors import InputError

MAX_MEMBERS = 65_535
"""Most members a zip may list: all a zip holds without ZIP64 records (a CT series is ~1000)."""

MAX_UNPACKED_BYTES = 2**32
"""Most bytes all members of a zip may unpack to together (IRCADb's MASKS_DICOM.zip: 0.65 GB)."""

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_NPY_MAGIC = b"\x93NUMPY"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_ZIP_ERRORS = (OSError, EOFError, ValueError, struct.error, zlib.error, zipfile.BadZipFile,
               NotImplementedError)


class Decoding:
    """Turn a library's exception on malformed bytes into one InputError line, chained."""

    def __init__(self, path, what: str, errors: tuple = _ZIP_ERRORS):
        self.path, self.what, self.errors = path, what, errors

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, InputError) or not isinstance(exc, self.errors):
            return False
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise InputError(self.what, "a readable file", reason, self.path) from exc


def open_zip(path: str | os.PathLike, what: str, *, max_members: int = MAX_MEMBERS,
             max_unpacked: int = MAX_UNPACKED_BYTES) -> zipfile.ZipFile:
    """A ``ZipFile`` whose member count, unpacked size and compression were checked first."""
    path = Path(path)
    with Decoding(path, what), open(path, "rb") as f:
        n_members = _central_directory_count(f, path, what)
    if n_members > max_members:
        raise InputError(what, f"a zip of at most {max_members} members",
                         f"a central directory listing {n_members} members", path)
    with Decoding(path, what):
        archive = zipfile.ZipFile(path)
    try:
        infos = archive.infolist()
        unpacked = sum(i.file_size for i in infos)
        if unpacked > max_unpacked:
            raise InputError(what, f"a zip unpacking to at most {max_unpacked} bytes",
                             f"members declaring {unpacked} bytes unpacked", path)
        for info in infos:
            if info.flag_bits & 0x1:
                raise InputError(what, "members without encryption",
                                 f"encrypted member {info.filename!r}", path)
            if info.compress_type not in _COMPRESSIONS:
                raise InputError(what, "members stored or compressed with deflate",
                                 f"compression method {info.compress_type} in {info.filename!r}", path)
    except BaseException:
        archive.close()
        raise
    return archive


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """The bytes of one member, never more than its declared size, checked against its CRC."""
    path = archive.filename
    with Decoding(path, what), open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise InputError(what, "a local header at the offset the central directory gives",
                             f"other bytes for member {info.filename!r}", path)
        f.seek(fields[-2] + fields[-1], os.SEEK_CUR)  # file name and extra field
        raw = f.read(info.compress_size)
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    else:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        with Decoding(path, what):
            data = inflate.decompress(raw, info.file_size + 1)
        if len(data) > info.file_size:
            raise InputError(what, f"member {info.filename!r} unpacking to its declared "
                             f"{info.file_size} bytes", "a stream that unpacks to more", path)
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise InputError(what, f"member {info.filename!r} of {info.file_size} bytes with its CRC",
                         f"{len(data)} bytes" + (" with another CRC" if len(data) == info.file_size
                                                 else " (truncated)"), path)
    return data


def _central_directory_count(f, path: Path, what: str) -> int:
    """Members listed in the end-of-central-directory record (ZIP64 when the zip has one)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
        raise InputError(what, "a zip archive", "a single .npy array (a .npy file renamed?)", path)
    tail_start = max(0, size - _EOCD_SIZE - 0xFFFF)  # the record ends with a comment < 64 KiB
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise InputError(what, "a zip archive", f"no zip end record in {size} bytes", path)
    count = struct.unpack_from("<H", tail, at + 10)[0]
    locator = at - 20
    if locator >= 0 and tail[locator:locator + 4] == _ZIP64_LOCATOR:
        f.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
        record = f.read(56)
        if len(record) == 56 and record[:4] == _ZIP64_EOCD:
            count = struct.unpack_from("<Q", record, 32)[0]
    return count
