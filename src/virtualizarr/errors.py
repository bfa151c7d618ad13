"""Every exception and warning VirtualiZarr raises, under one root.

Each class also inherits the builtin it refines, so callers can catch either
(``except ValueError`` keeps working for code that predates this module).
"""

from __future__ import annotations

__all__ = [
    "ChunkReadError",
    "CodecNotSupportedError",
    "CorruptFileError",
    "InvalidManifestError",
    "ListingNotSupportedError",
    "ManifestConcatError",
    "NEEDS_VALUES_HINT",
    "NeedsValuesError",
    "ObjectStoreError",
    "ParserError",
    "SourceChangedError",
    "SourceReadError",
    "UnknownFormatError",
    "UnsupportedFeatureError",
    "VariableSkippedWarning",
    "VirtualiZarrError",
    "VirtualiZarrWarning",
    "WriterError",
]


class VirtualiZarrError(Exception):
    """Root of every error raised by VirtualiZarr."""


class InvalidManifestError(VirtualiZarrError, ValueError):
    """Raised when chunk references are malformed (bad key, shape mismatch, negative offset...)."""


class ManifestConcatError(VirtualiZarrError, ValueError):
    """Raised when virtual arrays cannot be combined without changing their bytes."""


class NeedsValuesError(VirtualiZarrError, NotImplementedError):
    """Raised when an operation needs the values of a virtual array, which are not in memory."""


NEEDS_VALUES_HINT = (
    "A virtual variable holds chunk references, not values. Load it instead "
    "(open_virtual_dataset(..., loadable_variables=[name])), or read the real data with "
    "xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3)."
)
"""What a :class:`NeedsValuesError` message ends with: how to get the values instead."""


class ParserError(VirtualiZarrError, ValueError):
    """Raised when a file cannot be parsed (corrupt or truncated header, wrong format)."""


class CorruptFileError(ParserError):
    """Raised when a file's structure is damaged: a length running past the end, a missing end marker."""


class UnknownFormatError(ParserError):
    """Raised when no parser recognises a file's first bytes."""


class UnsupportedFeatureError(VirtualiZarrError, NotImplementedError):
    """Raised when a file uses a feature that cannot be expressed as chunk references."""


class CodecNotSupportedError(UnsupportedFeatureError):
    """Raised when a compression filter has no Zarr codec (or no Zarr v2 equivalent for a writer)."""


class ChunkReadError(VirtualiZarrError, OSError):
    """Raised when the bytes a reference points at cannot be fetched."""


class SourceChangedError(ChunkReadError):
    """Raised when a source file's size or ETag differs from the one recorded earlier.

    Between two requests of one parse, or between parsing a file and reading its chunks:
    the references would otherwise mix bytes of two versions of the file.
    """


class SourceReadError(VirtualiZarrError, OSError):
    """Raised when bytes of a source file cannot be fetched (after retrying transient failures)."""


class ObjectStoreError(VirtualiZarrError, OSError):
    """Raised when an object store fails to list, write, copy or delete (after retrying
    transient failures); the message names the URL. Missing objects and refused access are
    ``FileNotFoundError`` and ``PermissionError`` instead."""


class ListingNotSupportedError(UnsupportedFeatureError):
    """Raised when a URL's object store cannot list its objects (a plain HTTP server)."""


class WriterError(VirtualiZarrError, ValueError):
    """Raised when a virtual dataset cannot be written in the requested format."""


class VirtualiZarrWarning(UserWarning):
    """Root of every warning raised by VirtualiZarr."""


class VariableSkippedWarning(VirtualiZarrWarning):
    """Raised when a variable cannot be referenced and is left out of the virtual dataset."""
