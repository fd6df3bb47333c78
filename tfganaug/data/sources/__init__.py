"""The named data sources of the segmentation studies, one file each (a source is a function
`cases(data_cfg) -> (cases, fixed split by patient id or None)`; the kidney and abdomen phantoms
also take `lazy=True`, making each patient when it is reached, for streamed data sets).
`SOURCES.get(name)`; every
other `--data` value is a path, read by `data.segsets.source_cases` from what it holds, or
named sources joined by "+" (``ircadb+curvas``: each part split on its own, the splits joined).
Real sources read ../shared/data (or $TFGANAUG_DATA) in place; phantoms need no files.

Every source module also states its data's `LICENCE` and where its `TEST_PATIENTS` come from
relative to the training patients; `licence(name)` and `test_patients(name)` read them (also for
the ROI data sets `organamnist` and `phantom`, which `data.datasets.load_rois` reads)."""
import importlib
import sys

from tfganaug.registry import Registry

SOURCES = Registry("data source", {
    "phantom-kidney": "tfganaug.data.sources.phantoms:kidney",
    "phantom-abdomen": "tfganaug.data.sources.phantoms:abdomen",
    "phantom-abdomen-native": "tfganaug.data.sources.phantoms:abdomen_native",
    "phantom-brain": "tfganaug.data.sources.phantoms:brain",
    "kits19": "tfganaug.data.sources.kits19:png_slices",
    "kits19-labels": "tfganaug.data.sources.kits19:label_volumes",
    "ircadb": "tfganaug.data.sources.ircadb:cases",
    "totalseg-contrast": "tfganaug.data.sources.totalseg:contrast",
    "totalseg-native": "tfganaug.data.sources.totalseg:native",
    "curvas": "tfganaug.data.sources.curvas:cases",
    "curvas-val": "tfganaug.data.sources.curvas:val_cases",
    "brats": "tfganaug.data.sources.brats:brats2015",
    "brats2018": "tfganaug.data.sources.brats:brats2018",
})

UNITS = {"phantom-kidney": "HU", "phantom-abdomen": "HU", "phantom-abdomen-native": "HU", "phantom-brain": "zscore",
         "kits19": "grey8", "ircadb": "HU", "totalseg-contrast": "HU", "totalseg-native": "HU",
         "brats": "zscore", "brats2018": "zscore", "curvas": "HU", "curvas-val": "HU"}
"""The units (`Case.units`) of each named source's images, known without reading the source
(exports need them; tests/test_raw_inputs.py checks them against the phantoms' cases)."""


def parts_of(name: str) -> list[str]:
    """The named sources of `name`: ``"ircadb+curvas"`` -> ``["ircadb", "curvas"]``; a single
    source or a path is one part (a path containing "+" stays a path)."""
    pieces = str(name).split("+")
    return pieces if len(pieces) > 1 and all(p in SOURCES for p in pieces) else [str(name)]


def shared(*parts):
    """A path under the shared data folder, or one line saying where it was looked for."""
    from tfganaug.data.datasets import data_root
    from tfganaug.errors import InputError
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise InputError("shared data", f"{path} (set TFGANAUG_DATA to the shared data folder)",
                         "no such file or folder", path)
    return path


ROI_SOURCES = {"organamnist": "tfganaug.data.sources.organamnist", "phantom": "tfganaug.data.sources.phantoms"}
PERMISSIVE = ("CC BY 4.0", "Apache-2.0", "built-in (tfganaug)")
"""Licences under which images of the data (and of generators trained only on such data) may be
committed to a repository: the project guide's rule for report figures."""
USER_DATA = "unknown (your own data)"


def _module(name: str):
    """The source module of a named data source, or None for a path (the user's own data)."""
    if name in ROI_SOURCES:
        return importlib.import_module(ROI_SOURCES[name])
    if name in SOURCES:
        return sys.modules[SOURCES.get(name).__module__]
    return None


def licence(name: str) -> str:
    """The licence of a named data source (of each part of ``a+b``, joined by "; "); a path is the
    user's own data, of unknown licence."""
    licences = []
    for part in parts_of(name):
        module = _module(part)
        licences.append(module.LICENCE if module else USER_DATA)
    return "; ".join(dict.fromkeys(licences))


def permissive(name: str) -> bool:
    """May images of `name` (or made from it) be committed to a repository? Every part must allow it."""
    return all(licence(part) in PERMISSIVE for part in parts_of(name))


def test_patients(name: str) -> str:
    """Where the held-out patients of `name` come from, relative to its training patients (for
    ``a+b``, each part's statement after its name: each part is split on its own)."""
    texts = []
    parts = parts_of(name)
    for part in parts:
        module = _module(part)
        text = module.TEST_PATIENTS if module else "your data's held-out split (split by patient id)"
        texts.append(f"`{part}`: {text}" if len(parts) > 1 else text)
    return "; ".join(texts)
