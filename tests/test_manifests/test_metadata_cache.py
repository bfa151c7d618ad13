"""Metadata shortcuts (template cache, cheap with_metadata) give what zarr's full parse gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from zarr.core.metadata.v3 import ArrayV3Metadata

from virtualizarr.manifests.metadata import (
    _rebuilt,
    create_v3_array_metadata,
    metadata_from_dict,
    with_metadata,
)

ZLIB = [
    {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
    {"name": "numcodecs.zlib", "configuration": {"level": 4}},
]


def _uncached(**kw: Any) -> dict[str, Any]:
    """The metadata document zarr builds from scratch for ``kw`` (no template involved)."""
    meta = create_v3_array_metadata(**kw)
    return ArrayV3Metadata.from_dict(meta.to_dict()).to_dict()


@pytest.mark.parametrize(
    "fill_value", [None, 0, np.float32(9.96921e36), np.nan, np.float32("nan"), -1.5]
)
def test_template_reuse_matches_full_parse(fill_value: Any) -> None:
    base = {
        "data_type": np.dtype("<f4"),
        "chunk_shape": (1, 90, 180),
        "fill_value": fill_value,
        "codecs": ZLIB,
    }
    first = create_v3_array_metadata(
        shape=(24, 180, 360), attributes={"a": 1}, dimension_names=["t", "y", "x"], **base
    )
    second = create_v3_array_metadata(
        shape=(48, 181, 360), attributes={"b": [2]}, dimension_names=["u", "v", "w"], **base
    )
    assert second.shape == (48, 181, 360)
    assert second.attributes == {"b": [2]}
    assert second.dimension_names == ("u", "v", "w")
    assert first.attributes == {"a": 1}  # the template is not changed
    assert first.shape == (24, 180, 360)
    d = second.to_dict()
    assert d == _uncached(
        shape=(48, 181, 360), attributes={"b": [2]}, dimension_names=["u", "v", "w"], **base
    )


def test_different_templates_stay_apart() -> None:
    kw = {"shape": (4,), "chunk_shape": (2,), "dimension_names": ["x"]}
    a = create_v3_array_metadata(data_type="<f4", fill_value=np.float32(1), **kw)
    b = create_v3_array_metadata(data_type="<f8", fill_value=np.float64(1), **kw)
    c = create_v3_array_metadata(data_type=">f4", fill_value=np.float32(1), **kw)
    d = create_v3_array_metadata(data_type="<f4", fill_value=np.float32(2), **kw)
    e = create_v3_array_metadata(data_type="<f4", fill_value=np.float32(1), codecs=ZLIB, **kw)
    assert [m.data_type.to_native_dtype().str for m in (a, b, c)] == ["<f4", "<f8", ">f4"]
    assert c.to_dict()["codecs"][0]["configuration"]["endian"] == "big"
    assert a.fill_value == 1 and d.fill_value == 2  # noqa: PT018
    assert [c["name"] for c in e.to_dict()["codecs"]] == [
        "bytes",
        "numcodecs.shuffle",
        "numcodecs.zlib",
    ]
    assert len(a.codecs) == 1


@pytest.mark.filterwarnings("ignore:Missing .endian. for structured dtype")
def test_structured_fill_values_are_not_cached() -> None:
    dt = np.dtype([("a", "<i4"), ("b", "<f8")])
    fill = np.zeros((), dtype=dt)
    m = create_v3_array_metadata(shape=(3,), data_type=dt, chunk_shape=(3,), fill_value=fill)
    assert m.data_type.to_native_dtype() == dt


def test_cheap_with_metadata_matches_rebuild() -> None:
    meta = create_v3_array_metadata(
        shape=(10, 4),
        data_type="<i2",
        chunk_shape=(5, 2),
        fill_value=-9,
        codecs=[{"name": "numcodecs.zlib", "configuration": {"level": 1}}],
        attributes={"units": "m"},
        dimension_names=["y", "x"],
    )
    for changes in [
        {"shape": (20, 4)},
        {"attributes": {"new": True}},
        {"dimension_names": ["a", "b"]},
        {"shape": (15, 3), "attributes": {}, "dimension_names": None},
    ]:
        cheap = with_metadata(meta, **changes)
        assert cheap.to_dict() == _rebuilt(meta, changes).to_dict(), changes
    assert meta.shape == (10, 4)  # the original is unchanged
    assert meta.attributes == {"units": "m"}


def test_cheap_with_metadata_still_validates() -> None:
    meta = create_v3_array_metadata(shape=(4,), data_type="<f4", chunk_shape=(2,))
    with pytest.raises(ValueError, match="dimension_names"):
        with_metadata(meta, dimension_names=["a", "b"])
    # a different number of dimensions goes through zarr's full parse
    assert with_metadata(meta, shape=(4, 1), chunk_shape=(2, 1)).shape == (4, 1)
    with pytest.raises(ValueError, match="same number of dimensions"):
        with_metadata(meta, shape=(4, 1))


def test_object_dtypes_go_to_zarr_every_time() -> None:
    # dtypes differing only in metadata compare equal, so they are never cached
    vlen = np.dtype("O", metadata={"vlen": str})
    assert vlen == np.dtype("O")
    for _ in range(2):
        with pytest.raises(ValueError, match="from object failed"):
            create_v3_array_metadata(shape=(2,), data_type=vlen, chunk_shape=(2,))


def test_metadata_from_dict_matches_zarr() -> None:
    base = create_v3_array_metadata(
        shape=(24, 180),
        data_type=">f4",
        chunk_shape=(1, 90),
        fill_value=np.float32("nan"),
        codecs=ZLIB,
        attributes={"units": "K"},
        dimension_names=["t", "y"],
    ).to_dict()
    docs = [
        base,
        {**base, "shape": [48, 180], "attributes": {"units": "C", "n": [1, 2]}},
        {**base, "dimension_names": ["a", "b"]},
        {**{k: v for k, v in base.items() if k != "dimension_names"}, "shape": [1, 1]},
        {
            **base,
            "shape": [4],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
            "dimension_names": ["z"],
        },
    ]
    for doc in docs * 2:  # the second pass reuses the templates
        got = metadata_from_dict(doc)
        assert got.to_dict() == ArrayV3Metadata.from_dict(doc).to_dict()


def test_pickled_arrays_round_trip() -> None:
    import pickle

    from virtualizarr.manifests import ChunkManifest, ManifestArray

    meta = create_v3_array_metadata(
        shape=(4, 6),
        data_type="<i2",
        chunk_shape=(2, 3),
        codecs=ZLIB[1:],
        dimension_names=["y", "x"],
    )
    manifest = ChunkManifest.from_arrays(
        paths=np.full((2, 2), "s3://b/f.nc"),
        offsets=np.arange(4).reshape(2, 2),
        lengths=np.ones((2, 2)),
    )
    arr = ManifestArray(meta, manifest)
    for _ in range(2):
        back = pickle.loads(pickle.dumps(arr))
        assert back.metadata.to_dict() == meta.to_dict()
        assert back.manifest == manifest
