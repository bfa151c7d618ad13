"""What every step of one HDF5 parse shares: the file, the engine, the dimension namer.

A leaf below ``parser.py`` (which walks the groups) and ``arrays.py`` (which builds each
variable), so neither has to import the other's internals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import VariableSkippedWarning

if TYPE_CHECKING:
    from virtualizarr.parsers.hdf5.netcdf import DimensionNamer
    from virtualizarr.parsers.hdf5.parser import HDFParser

__all__ = ["ParseContext", "skip"]


@dataclass
class ParseContext:
    """One parse of one file."""

    url: str
    file_size: int
    namer: DimensionNamer
    objects: Any
    """The engine: :class:`Objects` (h5py) or ``own.OwnObjects``."""
    parser: HDFParser
    """The options (``inline_threshold``, ``group``...)."""


def skip(ctx: ParseContext, path: str, reason: str) -> None:
    """Warn that a variable is left out of the store."""
    warnings.warn(
        f"{ctx.url}: variable {path!r} skipped: {reason}.", VariableSkippedWarning, stacklevel=2
    )
