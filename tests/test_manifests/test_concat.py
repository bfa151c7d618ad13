"""Joining virtual arrays: the rules (each violation explained), and values read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import xarray as xr

from tests.test_manifests.builders import expected_values, read_zarr, virtual_array
from virtualizarr.errors import ManifestConcatError, NeedsValuesError
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata, with_metadata
from virtualizarr.store import ManifestStore


def refs(shape: tuple[int, ...] = (4, 6), **meta: Any) -> ManifestArray:
    """A virtual array over a (non-existent) file: enough to test the rules, which read nothing."""
    kw: dict[str, Any] = {
        "data_type": "<f4",
        "chunk_shape": (2, 3),
        "codecs": [{"name": "numcodecs.zlib", "configuration": {"level": 1}}],
    }
    kw.update(meta)
    m = create_v3_array_metadata(shape=shape, **kw)
    grid = tuple(-(-s // c) for s, c in zip(m.shape, m.chunks))
    n = int(np.prod(grid))
    manifest = ChunkManifest.from_arrays(
        paths="s3://bucket/x.nc", offsets=np.arange(n).reshape(grid) * 10, lengths=np.full(grid, 10)
    )
    return ManifestArray(m, manifest)


# -- each rule, each violation named with both values ------------------------------------------

VIOLATIONS = {
    "dtype": ({"data_type": "<f8"}, "dtype differs", "<f4", "<f8"),
    "byte order": ({"data_type": ">f4"}, "dtype differs", "<f4", ">f4"),
    "codec level": (
        {"codecs": [{"name": "numcodecs.zlib", "configuration": {"level": 9}}]},
        "codecs differs",
        "'level': 1",
        "'level': 9",
    ),
    "codec kind": (
        {"codecs": [{"name": "numcodecs.zstd", "configuration": {"level": 1}}]},
        "codecs differs",
        "numcodecs.zlib",
        "numcodecs.zstd",
    ),
    "chunk shape": ({"chunk_shape": (2, 2)}, "chunk shape differs", "(2, 3)", "(2, 2)"),
    "fill value": ({"fill_value": -1.0}, "fill value differs", "0.0", "-1.0"),
    "fill value nan": ({"fill_value": np.nan}, "fill value differs", "0.0", "nan"),
}


@pytest.mark.parametrize("case", VIOLATIONS.values(), ids=VIOLATIONS.keys())
@pytest.mark.parametrize("func", [np.concatenate, np.stack], ids=["concatenate", "stack"])
def test_violation_names_property_and_both_values(case: tuple, func: Any) -> None:
    changes, prop, first, second = case
    with pytest.raises(ManifestConcatError) as info:
        func([refs(), refs(**changes)])
    msg = str(info.value)
    assert prop in msg
    assert first in msg
    assert second in msg
    assert msg.index(first) < msg.index(second)  # input 0's value first
    assert "(input 0)" in msg
    assert "(input 1)" in msg


def test_nan_fill_values_are_equal() -> None:
    a = refs(fill_value=np.nan)
    assert np.concatenate([a, refs(fill_value=np.nan)]).shape == (8, 6)


@pytest.mark.parametrize("dtype", ["<M8[s]", "<m8[ns]"])
def test_nat_fill_values_are_equal(dtype: str) -> None:
    nat = np.array("NaT", dtype=dtype)[()]
    a = refs(data_type=dtype, fill_value=nat, codecs=[])
    assert np.concatenate([a, refs(data_type=dtype, fill_value=nat, codecs=[])]).shape == (8, 6)
    assert (a == refs(data_type=dtype, fill_value=nat, codecs=[])).all()


def test_length_not_multiple_of_chunk() -> None:
    with pytest.raises(ManifestConcatError) as info:
        np.concatenate([refs((3, 6)), refs((4, 6))], axis=0)
    msg = str(info.value)
    assert "input 0 has length 3" in msg
    assert "chunk length 2" in msg
    assert "Only the last input may end in a partial chunk" in msg
    with pytest.raises(ManifestConcatError, match="input 1 has length 5"):
        np.concatenate([refs((4, 6)), refs((4, 5)), refs((4, 6))], axis=1)
    # the last one may be partial, and so may every input along the other axes
    assert np.concatenate([refs((4, 6)), refs((3, 6))], axis=0).shape == (7, 6)
    assert np.concatenate([refs((3, 6)), refs((3, 5))], axis=1).shape == (3, 11)


def test_other_axes_and_ndim_must_match() -> None:
    with pytest.raises(ManifestConcatError, match=r"shape differs on axis 1: \(4, 6\) .* \(4, 3\)"):
        np.concatenate([refs((4, 6)), refs((4, 3))], axis=0)
    with pytest.raises(ManifestConcatError, match=r"number of dimensions differs: 2 .* 1"):
        np.concatenate([refs((4, 6)), refs((4,), chunk_shape=(2,))])
    with pytest.raises(ManifestConcatError, match="shape differs on axis 0"):
        np.stack([refs((4, 6)), refs((6, 6))])


def test_joining_with_values_or_nothing() -> None:
    with pytest.raises(NeedsValuesError, match="input 1"):
        np.concatenate([refs(), np.zeros((4, 6), "f4")])
    with pytest.raises(ValueError, match="at least one array"):
        np.stack([])
    with pytest.raises(np.exceptions.AxisError):
        np.concatenate([refs(), refs()], axis=2)


# -- values read back ------------------------------------------------------------------------------


def test_concatenate_three_files_with_missing_inlined_and_partial(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    datas = [rng.normal(size=(4, 6)).astype("<f8") for _ in range(2)] + [
        rng.normal(size=(3, 6)).astype("<f8")
    ]
    codecs = [numcodecs.Shuffle(elementsize=8), numcodecs.Zlib(level=2)]
    specs = [
        {"missing": [(1, 0)], "inline": [(0, 1)]},
        {"inline": [(0, 0), (1, 2)]},
        {"missing": [(0, 2)], "inline": [(1, 1)]},  # partial last chunk along axis 0 is inlined
    ]
    arrays = [
        virtual_array(tmp_path / f"f{i}.bin", d, (2, 2), codecs, fill_value=-9.0, **s)
        for i, (d, s) in enumerate(zip(datas, specs))
    ]
    expected = np.concatenate(
        [expected_values(d, (2, 2), s.get("missing", []), -9.0) for d, s in zip(datas, specs)]
    )
    c = np.concatenate(arrays, axis=0)
    assert c.shape == (11, 6)
    assert int(c.manifest.inlined.sum()) == 4
    assert int(c.manifest.missing.sum()) == 2
    np.testing.assert_array_equal(read_zarr(c), expected)
    # and along the other axis, inlined chunks shift with their columns
    c1 = np.concatenate([arrays[0], arrays[1]], axis=1)
    np.testing.assert_array_equal(
        read_zarr(c1), np.concatenate([expected[:4], expected[4:8]], axis=1)
    )


def test_stack_and_concat_negative_axis(tmp_path: Path) -> None:
    d1 = np.arange(12, dtype="<i8").reshape(3, 4)
    d2 = -d1
    a1 = virtual_array(tmp_path / "1.bin", d1, (3, 2), inline=[(0, 1)])
    a2 = virtual_array(tmp_path / "2.bin", d2, (3, 2))
    for axis in (0, 1, 2, -1):
        np.testing.assert_array_equal(
            read_zarr(np.stack([a1, a2], axis=axis)), np.stack([d1, d2], axis=axis)
        )
    np.testing.assert_array_equal(
        read_zarr(np.concatenate([a1, a2], axis=-1)), np.concatenate([d1, d2], axis=-1)
    )


def test_concat_of_many_is_cheap(tmp_path: Path) -> None:
    d = np.arange(8, dtype="<u2")
    a = virtual_array(tmp_path / "x.bin", d, (2,))
    c = np.concatenate([a] * 200)
    assert c.shape == (1600,)
    assert c.manifest.table == a.manifest.table  # one path, stored once
    np.testing.assert_array_equal(read_zarr(c), np.tile(d, 200))


# -- xarray combining without loading ----------------------------------------------------------------


def _dataset(path: Path, data: np.ndarray, t0: int, **kw: Any) -> xr.Dataset:
    arr = virtual_array(path, data, (2, 3), dimension_names=["time", "x"], **kw)
    return xr.Dataset(
        {"v": (("time", "x"), arr)},
        coords={"time": np.arange(t0, t0 + data.shape[0])},
        attrs={"source": path.name},
    )


def _read_dataset_vars(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Values of the virtual variables of ``ds``, through a ManifestStore."""
    arrays = {}
    for name, var in ds.data_vars.items():
        arr = var.data
        assert isinstance(arr, ManifestArray), f"{name} was loaded: {type(arr)}"
        arrays[name] = ManifestArray(
            with_metadata(arr.metadata, dimension_names=var.dims), arr.manifest
        )
    store = ManifestStore(ManifestGroup(arrays=arrays))
    opened = xr.open_zarr(store, consolidated=False, zarr_format=3)
    return {name: opened[name].values for name in arrays}


def test_xr_concat_along_existing_dim(tmp_path: Path) -> None:
    d1 = np.arange(12, dtype="<f4").reshape(4, 3)
    d2 = np.arange(12, 18, dtype="<f4").reshape(2, 3)
    ds1 = _dataset(tmp_path / "1.bin", d1, 0)
    ds2 = _dataset(tmp_path / "2.bin", d2, 4, inline=[(0, 0)])
    combined = xr.concat([ds1, ds2], dim="time", coords="minimal", compat="override")
    assert combined.sizes == {"time": 6, "x": 3}
    assert isinstance(combined["v"].data, ManifestArray)
    np.testing.assert_array_equal(combined["time"].values, np.arange(6))
    np.testing.assert_array_equal(_read_dataset_vars(combined)["v"], np.concatenate([d1, d2]))


def test_xr_concat_along_new_dim(tmp_path: Path) -> None:
    d1 = np.arange(12, dtype="<f4").reshape(4, 3)
    ds1 = _dataset(tmp_path / "1.bin", d1, 0)
    ds2 = _dataset(tmp_path / "2.bin", d1 * 2, 0)
    combined = xr.concat([ds1, ds2], dim="run", coords="minimal", compat="override")
    assert combined["v"].dims == ("run", "time", "x")
    assert combined["v"].data.chunks == (1, 2, 3)
    np.testing.assert_array_equal(_read_dataset_vars(combined)["v"], np.stack([d1, d1 * 2]))


def test_xr_concat_refuses_misaligned(tmp_path: Path) -> None:
    ds1 = _dataset(tmp_path / "1.bin", np.zeros((3, 3), "<f4"), 0)
    ds2 = _dataset(tmp_path / "2.bin", np.zeros((2, 3), "<f4"), 3)
    with pytest.raises(ManifestConcatError, match="input 0 has length 3"):
        xr.concat([ds1, ds2], dim="time", coords="minimal", compat="override")


def test_xr_merge_with_override(tmp_path: Path) -> None:
    d = np.arange(12, dtype="<f4").reshape(4, 3)
    ds1 = _dataset(tmp_path / "1.bin", d, 0)
    ds2 = _dataset(tmp_path / "2.bin", d + 100, 0).rename({"v": "w"})
    merged = xr.merge([ds1, ds2], compat="override", combine_attrs="override")
    assert set(merged.data_vars) == {"v", "w"}
    values = _read_dataset_vars(merged)
    np.testing.assert_array_equal(values["v"], d)
    np.testing.assert_array_equal(values["w"], d + 100)


def test_xr_combine_by_coords(tmp_path: Path) -> None:
    d1 = np.arange(12, dtype="<f4").reshape(4, 3)
    d2 = d1 + 12
    ds = [_dataset(tmp_path / "2.bin", d2, 4), _dataset(tmp_path / "1.bin", d1, 0)]
    combined = xr.combine_by_coords(
        ds, coords="minimal", compat="override", data_vars="minimal", combine_attrs="drop_conflicts"
    )
    np.testing.assert_array_equal(_read_dataset_vars(combined)["v"], np.concatenate([d1, d2]))
