"""The named data sources of the segmentation studies, one file each (a source is a function
`cases(data_cfg) -> (cases, fixed split by patient id or None)`). `SOURCES.get(name)`; every
other `--data` value is a path, read by `data.segsets.source_cases` from what it holds, or
named sources joined by "+" (``ircadb+curvas``: each part split on its own, the splits joined).
Real sources read ../shared/data (or $TFGANAUG_DATA) in place; phantoms need no files."""
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
