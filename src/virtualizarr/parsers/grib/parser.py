"""GRIBParser: GRIB edition 1 and 2 files as virtual Zarr, one chunk per message.

Every GRIB message is one field on one grid, so each message becomes one chunk that
the :class:`~virtualizarr.codecs.grib.GribCodec` decodes with ecCodes. Messages are
grouped the way cfgrib builds its hypercubes:

* one child group per ``(typeOfLevel, stepType)`` combination, named
  ``"<typeOfLevel>_<stepType>"`` (``"surface_instant"``, ``"isobaricInhPa_accum"``);
  a second grid under the same combination gets ``"_grid1"``, ``"_grid2"``...;
* in each group one variable per parameter, named by ecCodes' ``cfVarName`` as cfgrib
  names them (``t2m`` for ``2t``), with dimensions ``(number, time, step, <typeOfLevel>,
  latitude, longitude)`` -- ``(y, x)`` on projected grids, ``(values,)`` on reduced or
  spectral ones -- where axes with a single value in the group become scalar coordinates;
* coordinate values (forecast reference time, step, level, ensemble number, valid time,
  latitude/longitude) are inlined in the manifest; combinations absent from the file are
  missing chunks (read as NaN);
* two messages for the same variable and cell never overwrite each other: with
  ``duplicates="split"`` (default) the later ones go to groups suffixed ``"_dup1"``...,
  with ``duplicates="error"`` a :class:`~virtualizarr.errors.ParserError` names both.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from virtualizarr.codecs.grib import GribCodec
from virtualizarr.conversion import inline_array
from virtualizarr.errors import (
    CorruptFileError,
    ParserError,
)
from virtualizarr.io import read_range
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING, normalize_path
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.parsers.grib.coords import axis_attrs, geography
from virtualizarr.parsers.grib.scan import Message, scan_messages
from virtualizarr.parsers.grib.sections import (
    GribStructureError,
    check_grib1_values,
    check_points,
    decodable_message,
    grib1_large_length,
    grib1_layout,
)
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["GRIBParser"]

_INT_KEYS = (
    "edition",
    "paramId",
    "dataDate",
    "dataTime",
    "Ni",
    "Nj",
    "numberOfDataPoints",
    "jPointsAreConsecutive",
    "alternativeRowScanning",
    "subCentre",
)


class GRIBParser:
    """Parse a GRIB1/GRIB2 file into a :class:`ManifestStore` (see the module docs for the layout).

    Parameters
    ----------
    dtype
        Data type of the decoded values: ``"float64"`` (default) keeps ecCodes' values
        exactly; ``"float32"`` halves memory and matches cfgrib, at float32 precision.
    duplicates
        What to do with several messages for one variable and one (number, time, step,
        level): ``"split"`` them into extra groups or raise (``"error"``).

    >>> # store = GRIBParser()("s3://bucket/era5.grib", registry)
    >>> # xr.open_zarr(store, group="surface_instant", consolidated=False, zarr_format=3)
    """

    def __init__(
        self,
        *,
        dtype: Literal["float64", "float32"] = "float64",
        duplicates: Literal["split", "error"] = "split",
    ) -> None:
        if np.dtype(dtype) not in (np.dtype("float64"), np.dtype("float32")):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")
        if duplicates not in ("split", "error"):
            raise ValueError(f"duplicates must be 'split' or 'error', got {duplicates!r}.")
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.duplicates = duplicates

    def __repr__(self) -> str:
        return f"GRIBParser(dtype={self.dtype.name!r}, duplicates={self.duplicates!r})"

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether ``head`` holds a GRIB message start (``GRIB`` in its first KiB; files may
        begin with a header of their own). Asked after the text formats, whose attributes
        may mention ``GRIB``.

        >>> GRIBParser.sniff(bytes(100) + b"GRIB\\x00\\x00\\x00\\x02"), GRIBParser.sniff(b"GRI")
        (True, False)
        """
        return b"GRIB" in head[:1024]

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        url = normalize_path(url)
        messages = scan_messages(url, registry)
        cache = _KeyCache()
        rows = [_message_keys(url, registry, m, cache) for m in messages]
        groups = _assign_groups(url, rows, split=self.duplicates == "split")
        geo_cache: dict[tuple[Any, ...], Any] = {}  # groups on one grid share its coordinates
        children = {
            name: _build_group(url, registry, [rows[i] for i in members], self.dtype, geo_cache)
            for name, members in groups.items()
        }
        first = rows[0]
        attrs = {
            "GRIB_edition": sorted({r["edition"] for r in rows}),
            "GRIB_centre": first["centre"],
            "GRIB_centreDescription": first["centreDescription"],
            "GRIB_subCentre": first["subCentre"],
            "Conventions": "CF-1.7",
            "institution": first["centreDescription"],
        }
        return ManifestStore(ManifestGroup(groups=children, attributes=attrs), registry=registry)


# -- keys of each message -------------------------------------------------------------------

# Keys that ecCodes derives from its parameter tables ("concepts"): about 1 ms each per
# message. They depend on the parameter, the level and the centre's tables, never on the
# reference date, so messages whose headers differ only in that date share them.
_CONCEPT_KEYS = ("shortName", "cfVarName", "name", "units", "cfName")
_STR_KEYS = (
    "typeOfLevel",
    "stepType",
    "gridType",
    "dataType",
    "md5GridSection",
    "centre",
    "centreDescription",
)


class _KeyCache:
    """Keys already read, by header bytes with the reference date masked (see :func:`_date_key`)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, dict[str, Any]] = {}
        self.concepts: dict[tuple[Any, ...], dict[str, str]] = {}


def _message_keys(
    url: str, registry: ObjectStoreRegistry, msg: Message, cache: _KeyCache
) -> dict[str, Any]:
    masked = _date_key(msg.header)
    if masked is not None and masked[0] in cache.rows:
        row = dict(cache.rows[masked[0]])
        row["message"] = msg
        row["dataDate"], row["dataTime"], second = masked[1]
        try:
            row["time"] = _epoch(row["dataDate"], row["dataTime"], second)
        except ValueError as e:
            raise CorruptFileError(f"{url}: {msg.where} has an impossible date: {e}.") from None
        return row
    row = _read_keys(url, registry, msg, cache)
    if masked is not None:
        cache.rows[masked[0]] = row
    return row


def _date_key(header: bytes) -> tuple[bytes, tuple[int, int, int]] | None:
    """The header with its reference date zeroed, and that date as (dataDate, dataTime, second).

    GRIB1: the product definition and grid sections (octets 13-17 and 25 of the PDS are
    the date). GRIB2: the discipline and sections 1-4 (octets 13-19 of section 1 are the
    date); section 5 (the packing: reference value, scale factors) holds no key we read.
    """
    try:
        if header[7] == 1:
            n_pds = int.from_bytes(header[8:11], "big")
            pds = bytearray(header[8 : 8 + n_pds])
            y, mo, d, hh, mi, c = pds[12], pds[13], pds[14], pds[15], pds[16], pds[24]
            pds[12:17] = bytes(5)
            pds[24] = 0
            rest = b""
            if pds[7] & 0x80:
                n_gds = int.from_bytes(header[8 + n_pds : 11 + n_pds], "big")
                rest = header[8 + n_pds : 8 + n_pds + n_gds]
            ymd = ((c - 1) * 100 + y) * 10000 + mo * 100 + d
            return b"1" + bytes(pds) + rest, (ymd, hh * 100 + mi, 0)
        parts, pos = [header[6:7]], 16
        date = (0, 0, 0)
        while pos < len(header) - 4:
            n, num = int.from_bytes(header[pos : pos + 4], "big"), header[pos + 4]
            sec = header[pos : pos + n]
            if num == 1:
                yr = int.from_bytes(sec[12:14], "big")
                date = (yr * 10000 + sec[14] * 100 + sec[15], sec[16] * 100 + sec[17], sec[18])
                sec = sec[:12] + bytes(7) + sec[19:]
            if num in (1, 2, 3, 4):
                parts.append(sec)
            pos += max(n, 5)
        return b"2" + b"".join(parts), date
    except IndexError:  # pragma: no cover -- headers were checked by the scan
        return None


def _epoch(date: int, time: int, second: int) -> int:
    day = np.datetime64(f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}", "s")
    return int(day.astype(np.int64)) + (time // 100) * 3600 + (time % 100) * 60 + second


def _read_keys(
    url: str, registry: ObjectStoreRegistry, msg: Message, cache: _KeyCache
) -> dict[str, Any]:
    import eccodes

    try:
        h = eccodes.codes_new_from_message(msg.header)
    except eccodes.GribInternalError:
        # a packing whose headers ecCodes will not read without the data: use the field itself
        try:
            data = decodable_message(read_range(url, msg.offset, msg.length, registry))
            h = eccodes.codes_new_from_message(data)
        except (eccodes.GribInternalError, GribStructureError) as e:
            raise CorruptFileError(f"{url}: ecCodes cannot read {msg.where}: {e}.") from e
    try:
        row: dict[str, Any] = {"message": msg}
        for key in _STR_KEYS:
            row[key] = _get(h, key, str, "unknown")
        for key in _INT_KEYS:
            row[key] = _get(h, key, int, -1)
        concept = (row["edition"], row["centre"], row["subCentre"], row["paramId"])
        strings = cache.concepts.get(concept) if row["paramId"] > 0 else None
        if strings is None:
            strings = {k: _get(h, k, str, "unknown") for k in _CONCEPT_KEYS}
            cache.concepts[concept] = strings
        row.update(strings)
        row["level"] = _get(h, "level", float, 0.0)
        row["number"] = _get(h, "number", int, None)
        second = _get(h, "second", int, 0)
        row["time"] = _epoch(row["dataDate"], row["dataTime"], second)
        eccodes.codes_set(h, "stepUnits", "s")
        row["step"] = _get(h, "endStep", int, 0)
    except (eccodes.GribInternalError, ValueError) as e:
        raise CorruptFileError(f"{url}: ecCodes cannot read the keys of {msg.where}: {e}.") from e
    finally:
        eccodes.codes_release(h)
    _check_grid(url, msg, row)
    return row


def _check_grid(url: str, msg: Message, row: dict[str, Any]) -> None:
    """Refuse grids the message cannot hold, before anything is allocated for them."""
    try:
        check_points(row["numberOfDataPoints"], msg.message_length)
        if msg.header[7] == 1:  # GRIB1 headers are whole messages

            def read(off: int, n: int) -> bytes:
                return msg.header[off : off + n]

            coded = int.from_bytes(msg.header[4:7], "big")
            large = coded & 0x800000 and grib1_large_length(read, coded, len(msg.header))[1]
            layout = grib1_layout(read, len(msg.header), bool(large))
            check_grib1_values(read, layout, row["numberOfDataPoints"])
    except GribStructureError as e:
        raise CorruptFileError(f"{url}: {msg.where} is corrupt: {e}.") from None
    ni, nj = row["Ni"], row["Nj"]
    if row["gridType"] in (
        "regular_ll",
        "regular_gg",
        "rotated_ll",
        "lambert",
        "polar_stereographic",
        "mercator",
    ) and (ni <= 0 or nj <= 0 or ni * nj != row["numberOfDataPoints"]):
        raise CorruptFileError(
            f"{url}: {msg.where} is corrupt: its {row['gridType']} grid of Ni={ni} by Nj={nj} "
            f"does not have its {row['numberOfDataPoints']} data points."
        )


def _get(h: Any, key: str, kind: type, default: Any) -> Any:
    import eccodes

    try:
        if kind is float:
            return eccodes.codes_get_double(h, key)
        return kind(eccodes.codes_get(h, key, ktype=kind))
    except (eccodes.KeyValueNotFoundError, eccodes.GribInternalError):
        return default


# -- grouping into hypercubes ---------------------------------------------------------------


def _assign_groups(url: str, rows: list[dict[str, Any]], *, split: bool) -> dict[str, list[int]]:
    """Group name -> message indices (see the module docs for the naming)."""
    grids: dict[tuple[str, str], list[tuple[Any, Any, Any]]] = {}
    seen: dict[tuple[Any, ...], int] = {}
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        base = (r["typeOfLevel"], r["stepType"])
        grid = (r["md5GridSection"], r["gridType"], r["numberOfDataPoints"])
        known = grids.setdefault(base, [])
        if grid not in known:
            known.append(grid)
        g = known.index(grid)
        cell = (
            base,
            g,
            r["paramId"],
            r["cfVarName"],
            r["number"],
            r["time"],
            r["step"],
            r["level"],
        )
        dup = seen.get(cell, -1) + 1
        seen[cell] = dup
        if dup and not split:
            first = next(j for j in range(i) if _cell(rows[j], grids) == cell)
            raise ParserError(
                f"{url}: GRIB messages {first} (byte {rows[first]['message'].offset}) and {i} (byte "
                f"{r['message'].offset}) are both {r['cfVarName']!r} on {r['typeOfLevel']} level "
                f"{r['level']:g}, step {r['step']} s, time {r['time']} s: pass duplicates='split' "
                "to put the second one in its own group."
            )
        name = f"{base[0]}_{base[1]}" + (f"_grid{g}" if g else "") + (f"_dup{dup}" if dup else "")
        groups.setdefault(name, []).append(i)
    return groups


def _cell(
    r: dict[str, Any], grids: dict[tuple[str, str], list[tuple[Any, Any, Any]]]
) -> tuple[Any, ...]:
    base = (r["typeOfLevel"], r["stepType"])
    g = grids[base].index((r["md5GridSection"], r["gridType"], r["numberOfDataPoints"]))
    return (base, g, r["paramId"], r["cfVarName"], r["number"], r["time"], r["step"], r["level"])


def _build_group(
    url: str,
    registry: ObjectStoreRegistry,
    rows: list[dict[str, Any]],
    dtype: np.dtype,
    geo_cache: dict[tuple[Any, ...], Any],
) -> ManifestGroup:
    """One hypercube: shared axes, one variable per parameter, inlined coordinates."""
    first = rows[0]
    level_name = first["typeOfLevel"]
    has_number = any(r["number"] is not None for r in rows)
    axis_names = ["number", "time", "step", level_name]
    columns = [
        np.array([r["number"] or 0 for r in rows], dtype=np.int64),
        np.array([r["time"] for r in rows], dtype=np.int64),
        np.array([r["step"] for r in rows], dtype=np.int64),
        np.array([r["level"] for r in rows], dtype=np.float64),
    ]
    uniques, inverses = zip(*(np.unique(c, return_inverse=True) for c in columns))
    keep = [len(u) > 1 for u in uniques]  # singleton axes become scalar coordinates
    dims = [n for n, k in zip(axis_names, keep) if k]
    grid_key = (first["md5GridSection"], first["gridType"], first["numberOfDataPoints"])
    if grid_key not in geo_cache:
        geo_cache[grid_key] = _shared_geography(url, registry, first)
    geo_dims, geo_shape, coords = geo_cache[grid_key]
    # chunk index of each message on the full (number, time, step, level) grid
    cell = np.stack(inverses, axis=1)
    full_shape = tuple(len(u) for u in uniques)

    arrays: dict[str, ManifestArray] = {}
    scalar_names = [n for n, k in zip(axis_names, keep) if not k and (n != "number" or has_number)]
    for name, values, k in zip(axis_names, uniques, keep):
        if name == "number" and not has_number:
            continue
        arrays[name] = inline_array(
            values if k else values[0], (name,) if k else (), axis_attrs(name, first)
        )
    # valid_time = time + step, over whichever of the two are dimensions
    valid = uniques[1][:, None] + uniques[2][None, :]
    vt_dims = tuple(n for n, k in zip(("time", "step"), keep[1:3]) if k)
    arrays["valid_time"] = inline_array(
        valid.reshape(tuple(v for v, k in zip(valid.shape, keep[1:3]) if k)),
        vt_dims,
        axis_attrs("valid_time", first),
    )
    arrays.update(coords)
    coord_attr = " ".join([*scalar_names, "valid_time", *(c for c in coords if c not in geo_dims)])

    var_keys = [(r["cfVarName"], r["paramId"]) for r in rows]
    offsets = np.array([r["message"].offset for r in rows], dtype=np.uint64)
    lengths = np.array([r["message"].length for r in rows], dtype=np.uint64)
    names = _variable_names(var_keys, set(arrays))
    for key, name in names.items():
        sel = np.array([vk == key for vk in var_keys])
        ids = np.full(full_shape, MISSING, dtype=np.uint32)
        offs = np.zeros(full_shape, dtype=np.uint64)
        lens = np.zeros(full_shape, dtype=np.uint64)
        idx = tuple(cell[sel].T)
        ids[idx], offs[idx], lens[idx] = 0, offsets[sel], lengths[sel]
        grid = tuple(s for s, k in zip(full_shape, keep) if k) + (1,) * len(geo_dims)
        manifest = ChunkManifest.from_path_ids(
            table=[url],
            ids=ids.reshape(grid),
            offsets=offs.reshape(grid),
            lengths=lens.reshape(grid),
        )
        meta = create_v3_array_metadata(
            shape=grid[: len(dims)] + geo_shape,
            data_type=dtype,
            chunk_shape=(1,) * len(dims) + geo_shape,
            fill_value=np.nan,
            codecs=[GribCodec(dtype=dtype.str)],
            attributes=_variable_attrs(rows[int(np.argmax(sel))], coord_attr),
            dimension_names=[*dims, *geo_dims],
        )
        arrays[name] = ManifestArray(meta, manifest)
    attrs = {
        "GRIB_typeOfLevel": level_name,
        "GRIB_stepType": first["stepType"],
        "GRIB_centre": first["centre"],
        "GRIB_edition": first["edition"],
    }
    return ManifestGroup(arrays=arrays, attributes=attrs)


_GRIDS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_GRIDS_LOCK = threading.Lock()
_GRIDS_KEPT = 8


def _shared_geography(url: str, registry: ObjectStoreRegistry, r: dict[str, Any]) -> Any:
    """:func:`geography`, remembered per grid for the process (the last ``_GRIDS_KEPT`` grids).

    ecCodes computes each point's latitude/longitude from the grid section alone (seconds
    for a 2-million-point Lambert grid), so files on one grid -- the usual many-file
    archive -- share one computation. ``md5GridSection`` is ecCodes' digest of that section.
    """
    key = (r["edition"], r["md5GridSection"], r["gridType"], r["numberOfDataPoints"], r["Ni"], r["Nj"],
           r["jPointsAreConsecutive"], r["alternativeRowScanning"])  # fmt: skip
    if r["md5GridSection"] in ("unknown", ""):
        return geography(url, registry, r)
    with _GRIDS_LOCK:
        if key in _GRIDS:
            _GRIDS.move_to_end(key)
            return _GRIDS[key]
    geo = geography(url, registry, r)  # outside the lock: two threads may both compute it
    with _GRIDS_LOCK:
        _GRIDS[key] = geo
        while len(_GRIDS) > _GRIDS_KEPT:
            _GRIDS.popitem(last=False)
    return geo


def _variable_names(keys: list[tuple[str, int]], taken: set[str]) -> dict[tuple[str, int], str]:
    """cfVarName per parameter; a clash (two paramIds, or a coordinate's name) gets a suffix."""
    out: dict[tuple[str, int], str] = {}
    for key in dict.fromkeys(keys):
        name = key[0]
        if name in taken or name in out.values():
            name = f"{key[0]}_{key[1]}" if key[1] >= 0 else f"{key[0]}_{len(out)}"
        out[key] = name
    return out


def _variable_attrs(r: dict[str, Any], coordinates: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        f"GRIB_{k}": r[k]
        for k in (
            "paramId",
            "dataType",
            "numberOfDataPoints",
            "typeOfLevel",
            "stepType",
            "gridType",
            "shortName",
            "cfVarName",
            "name",
            "units",
            "cfName",
        )
    }
    attrs.update({"long_name": r["name"], "units": r["units"], "coordinates": coordinates})
    if r["cfName"] not in ("unknown", "~", ""):
        attrs["standard_name"] = r["cfName"]
    return attrs
