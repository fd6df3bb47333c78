"""Prepared 2-D slices on disk, read a row at a time: the images and masks of a streamed
segmentation data set (``DataConfig.stream``; `segsets.slices_from_cases` writes them).

A :class:`SliceStore` is an unnamed temporary file (created and unlinked at once: only its
open descriptor holds it, so it goes with the store or the process, even one killed with
SIGKILL) of fixed-size rows, one per slice: float32 (S, S, C) images in one store, uint8 (S, S)
masks in another, appended case by case while the cases are prepared, so a data set of many
patients never exists in memory. A :class:`DiskRows` is a view on rows of one or more
stores that indexes like the NumPy array it stands for (an integer reads one row; a slice,
an index array or a boolean mask gives another view; ``len`` / ``shape`` / ``dtype``), so
`SegSet.subset` and the patient splits work unchanged; :meth:`DiskRows.rows` reads a few rows
with ``os.pread`` (no memory map: the pages read do not stay in this process's resident set).
``np.asarray`` of a view reads all of it: only for sets small enough to hold.
"""
from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np


class SliceStore:
    """Append-only raw rows of one dtype and row shape, in an unnamed temporary file."""

    def __init__(self, dtype, row_shape: tuple):
        self.dtype, self.row_shape = np.dtype(dtype), tuple(int(n) for n in row_shape)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.fd, path = tempfile.mkstemp(prefix="tfganaug-slices-")
        os.unlink(path)  # nothing left behind, whatever ends the process
        self.n = 0
        weakref.finalize(self, os.close, self.fd)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {self.row_shape} expected, got {rows.shape[1:]}")
        os.pwrite(self.fd, rows.tobytes(), self.n * self.row_bytes)
        self.n += len(rows)

    def view(self) -> "DiskRows":
        return DiskRows((self,), np.zeros(self.n, np.int32), np.arange(self.n, dtype=np.int64))


class DiskRows:
    """Rows of stores, indexed like an array of shape (N,) + row shape (module docstring)."""

    def __init__(self, stores: tuple, store_of: np.ndarray, row_of: np.ndarray):
        self.stores, self.store_of, self.row_of = stores, store_of, row_of
        self.dtype = stores[0].dtype
        self.shape = (len(row_of),) + stores[0].row_shape
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.row_of)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.rows([int(index)])[0]
        return DiskRows(self.stores, self.store_of[index], self.row_of[index])

    def rows(self, positions) -> np.ndarray:
        """The rows at `positions` of this view, read from disk, as one array."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        out = np.empty((len(positions),) + self.shape[1:], self.dtype)
        for k, i in enumerate(positions):
            store = self.stores[self.store_of[i]]
            data = os.pread(store.fd, store.row_bytes, int(self.row_of[i]) * store.row_bytes)
            out[k] = np.frombuffer(data, self.dtype).reshape(self.shape[1:])
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.rows(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    @staticmethod
    def join(a: "DiskRows", b: "DiskRows") -> "DiskRows":
        """`a`'s rows then `b`'s (as np.concatenate of the two arrays)."""
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
            raise ValueError(f"rows {a.shape[1:]} {a.dtype} and {b.shape[1:]} {b.dtype} do not join")
        return DiskRows(a.stores + b.stores, np.concatenate([a.store_of, b.store_of + len(a.stores)]),
                        np.concatenate([a.row_of, b.row_of]))
