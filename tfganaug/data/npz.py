"""NumPy archives (``.npz``) checked member by member before any array is allocated.

``np.load`` trusts each member's ``.npy`` header: it allocates the shape a header claims and
only then finds out whether the data is there. :func:`read_npz` first reads every wanted
member's header inside the zip (``numpy.lib.format.read_magic`` and
``read_array_header_1_0``/``2_0``, no data) and checks what the reader asked for in a
:class:`Member`: dtype kind and rank, at most :data:`MAX_ELEMENTS` elements and
:data:`MAX_ARRAY_BYTES` bytes as float32, at least one element, data
as long as the header claims, and one first-axis length shared by all per-item members (one
label and one patient id per image). Only then are the arrays read, into buffers of exactly
the checked size. Object arrays are refused from the header, so nothing is unpickled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfganaug.data.archives import Decoding, open_zip
from tfganaug.errors import InputError

MAX_ARRAY_BYTES = 2**31
"""Largest array, counted as its float32 copy, that a reader allocates."""

MAX_ELEMENTS = MAX_ARRAY_BYTES // 4
"""Most elements one array may hold (its float32 copy fits in :data:`MAX_ARRAY_BYTES`)."""

NUMERIC = "biuf"
INTEGER = "iu"
TEXT = "USiu"  # names and ids: strings, or integer ids

_KIND_NAMES = {"b": "bool", "i": "int", "u": "uint", "f": "float", "U": "str", "S": "bytes"}


@dataclass(frozen=True)
class Member:
    """What one array of an archive must be.

    ``kinds`` are the allowed ``dtype.kind`` letters; ``ndim`` the allowed ranks (None: any);
    ``per_item``: the first axis counts items and must agree with the other per-item members.
    """

    kinds: str = NUMERIC
    ndim: tuple[int, ...] | None = None
    required: bool = True
    per_item: bool = True


def npz_keys(path: str | os.PathLike, what: str) -> list[str]:
    """The array names of an archive, in stored order (the zip's bounds checked)."""
    with open_zip(path, what) as archive:
        return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]


def read_npz(path: str | os.PathLike, members: dict[str, Member], what: str) -> dict[str, np.ndarray]:
    """The wanted arrays of ``path``, each checked against its :class:`Member` (see above).

    Optional members that are absent are left out of the result; other arrays are ignored.
    """
    path = Path(path)
    with open_zip(path, what) as archive:
        infos = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
        missing = [key for key, m in members.items() if m.required and key not in infos]
        if missing:
            wanted = [key for key, m in members.items() if m.required]
            raise InputError(what, "arrays " + ", ".join(map(repr, wanted)),
                             f"no {', '.join(missing)} (arrays {sorted(infos)})", path)
        present = [key for key in members if key in infos]
        headers = {}
        for key in present:
            with Decoding(path, what), archive.open(infos[key]) as f:
                headers[key] = _checked_header(f, infos[key].file_size, members[key], path, what, key)
        _check_lengths({k: h[0] for k, h in headers.items() if members[k].per_item}, path, what)
        arrays = {}
        for key in present:
            with Decoding(path, what), archive.open(infos[key]) as f:
                arrays[key] = read_npy(f, infos[key].file_size, members[key], path, what, key)
    return arrays


def read_npy(f, size: int, member: Member, path, what: str, key: str | None = None) -> np.ndarray:
    """The array of the ``.npy`` stream ``f`` of ``size`` bytes, checked before it is allocated."""
    return _read_data(f, *_checked_header(f, size, member, path, what, key), path, what, key)


def read_npy_header(f, path, what: str, key: str | None = None) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at ``f``, its size checked."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    name = f"array {key!r}" if key else "array"
    if dtype.hasobject:
        raise InputError(what, f"{name} of numbers or strings (allow_pickle is off)",
                         f"dtype {dtype} (pickled Python objects)", path)
    n = int(np.prod(shape, dtype=object))  # Python ints: a claimed size cannot overflow
    n_bytes = n * max(dtype.itemsize, 4)
    if n > MAX_ELEMENTS or n_bytes > MAX_ARRAY_BYTES:
        raise InputError(what, f"{name} of at most {MAX_ELEMENTS} elements and {MAX_ARRAY_BYTES} bytes",
                         f"a header claiming shape {tuple(shape)}: {n} elements, {n_bytes} bytes", path)
    return tuple(shape), fortran, dtype


def _checked_header(f, size: int, member: Member, path, what: str, key: str | None):
    shape, fortran, dtype = read_npy_header(f, path, what, key)
    name = f"array {key!r}" if key else "array"
    if dtype.kind not in member.kinds or dtype.fields is not None or dtype.itemsize == 0:
        allowed = "/".join(_KIND_NAMES[k] for k in member.kinds)
        raise InputError(what, f"{name} of dtype {allowed}", f"dtype {dtype}", path)
    if member.ndim is not None and len(shape) not in member.ndim:
        ranks = " or ".join(f"{d}-D" for d in member.ndim)
        raise InputError(what, f"{name} {ranks}", f"shape {shape}", path)
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if n_bytes == 0:
        raise InputError(what, f"{name} with at least one element", f"shape {shape}", path)
    stored = size - f.tell()  # the declared size less the header
    if stored < n_bytes:
        raise InputError(what, f"{name} of {n_bytes} bytes (shape {shape}, {dtype})",
                         f"{stored} bytes of data (a truncated member)", path)
    return shape, fortran, dtype


def _check_lengths(shapes: dict, path, what: str) -> None:
    lengths = {key: shape[0] if shape else 1 for key, shape in shapes.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        odd = next(k for k, n in lengths.items() if n != lengths[first])
        raise InputError(what, f"one {odd!r} entry per {first!r} entry ({lengths[first]})",
                         f"{lengths[odd]} in {odd!r} (lengths {lengths})", path)


def _read_data(f, shape, fortran: bool, dtype: np.dtype, path, what: str, key: str | None) -> np.ndarray:
    name = f"array {key!r}" if key else "array"
    flat = np.empty(int(np.prod(shape, dtype=np.int64)), dtype)
    view = memoryview(flat.view(np.uint8))
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise InputError(what, f"{name} of {len(view)} bytes", f"{done} bytes (truncated)", path)
        done += n
    array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    if dtype.kind == "f":
        n_bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise InputError(what, f"{name} of finite values", f"{n_bad} NaN/Inf values", path)
    return array
