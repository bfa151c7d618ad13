"""open_virtual_dataset / dataset_from_store / ds.vz on files parsed by a tiny real parser.

The parser here reads raw binary files written with numpy ``tofile`` (plus a JSON sidecar
describing them); it exercises the xarray layer without depending on any format parser.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import virtualizarr
from virtualizarr import ManifestGroup, ManifestStore, ObjectStoreRegistry, open_virtual_dataset
from virtualizarr.errors import NeedsValuesError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.metadata import create_v3_array_metadata


class RawParser:
    """Sidecar JSON ``{"vars": {name: {dims, dtype, shape, chunk, offset, attrs}}, "attrs": {}}``."""

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        from virtualizarr.io import read_range

        side = json.loads(read_range(url + ".json", 0, 1 << 20, registry))
        arrays = {}
        for name, v in side["vars"].items():
            dtype = np.dtype(v["dtype"])
            shape, chunk = tuple(v["shape"]), tuple(v["chunk"])
            grid = tuple(-(-s // c) for s, c in zip(shape, chunk))
            nbytes = int(np.prod(chunk)) * dtype.itemsize
            offsets = (
                v["offset"] + np.arange(int(np.prod(grid)), dtype=np.uint64).reshape(grid) * nbytes
            )
            manifest = ChunkManifest.from_arrays(
                paths=url, offsets=offsets, lengths=np.full(grid, nbytes)
            )
            meta = create_v3_array_metadata(
                shape=shape,
                data_type=dtype,
                chunk_shape=chunk,
                attributes=v.get("attrs", {}),
                dimension_names=v["dims"],
                fill_value=v.get("fill_value"),
            )
            arrays[name] = ManifestArray(meta, manifest)
        return ManifestStore(
            ManifestGroup(arrays=arrays, attributes=side.get("attrs", {})), registry=registry
        )


def write_raw(
    path: Path, variables: dict[str, tuple], attrs: dict | None = None
) -> dict[str, np.ndarray]:
    """variables: name -> (dims, values, chunk, attrs). Each chunk is stored full size, C order."""
    side: dict = {"vars": {}, "attrs": attrs or {}}
    out = {}
    with open(path, "wb") as f:
        for name, (dims, values, chunk, vattrs) in variables.items():
            values = np.asarray(values)
            grid = tuple(-(-s // c) for s, c in zip(values.shape, chunk))
            side["vars"][name] = {
                "dims": dims,
                "dtype": values.dtype.str,
                "shape": values.shape,
                "chunk": chunk,
                "offset": f.tell(),
                "attrs": vattrs,
            }
            for idx in np.ndindex(*grid):
                block = np.zeros(chunk, dtype=values.dtype)
                sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunk))
                part = values[sl]
                block[tuple(slice(0, s) for s in part.shape)] = part
                f.write(block.tobytes())
            out[name] = values
    path.with_name(path.name + ".json").write_text(json.dumps(side))
    return out


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    path = tmp_path / "sample.bin"
    values = write_raw(
        path,
        {
            "time": (
                ["time"],
                np.arange(6, dtype="<i8"),
                (6,),
                {"units": "days since 2000-01-01", "calendar": "standard"},
            ),
            "lat": (
                ["lat"],
                np.linspace(-10, 10, 5).astype(">f4"),
                (5,),
                {"units": "degrees_north"},
            ),
            "air": (
                ["time", "lat"],
                rng.normal(size=(6, 5)).astype(">f8"),
                (2, 5),
                {"units": "K", "coordinates": "height"},
            ),
            "height": ([], np.array(2.0, dtype="<f4"), (), {}),
        },
        attrs={"title": "sample"},
    )
    return path, values


def test_default_loads_dimension_coords_and_decodes_times(sample):
    path, values = sample
    ds = open_virtual_dataset(str(path), parser=RawParser())
    assert isinstance(ds["air"].data, ManifestArray)
    assert isinstance(ds["height"].variable.data, ManifestArray)
    assert "height" in ds.coords  # from the CF coordinates attribute
    assert ds["time"].dtype.kind == "M"
    assert str(ds["time"].values[1])[:10] == "2000-01-02"
    np.testing.assert_array_equal(ds["lat"].values, values["lat"])
    assert set(ds.indexes) == {"time", "lat"}
    assert ds.attrs["title"] == "sample"
    assert ds.encoding["source"] == "file://" + str(path)
    assert ds["air"].attrs["units"] == "K"


def test_loadable_empty_keeps_everything_virtual(sample):
    path, _ = sample
    ds = open_virtual_dataset(path, parser=RawParser(), loadable_variables=[])
    assert all(isinstance(v.data, ManifestArray) for v in ds.variables.values())
    assert not ds.indexes
    assert ds.vz.nrefs() == 1 + 1 + 3 + 1


def test_explicit_loadable_and_drop(sample):
    path, values = sample
    ds = open_virtual_dataset(
        path, parser=RawParser(), loadable_variables=["air"], drop_variables=["height"]
    )
    assert "height" not in ds.variables
    np.testing.assert_array_equal(ds["air"].values, values["air"])
    assert isinstance(ds["time"].variable.data, ManifestArray)
    with pytest.raises(ValueError, match="not variables"):
        open_virtual_dataset(path, parser=RawParser(), loadable_variables=["nope"])


def test_virtual_values_need_loading_with_a_hint(sample):
    path, _ = sample
    ds = open_virtual_dataset(path, parser=RawParser())
    with pytest.raises(NeedsValuesError, match="loadable_variables"):
        ds["air"].values  # noqa: B018


def test_to_store_reads_real_values_back(sample):
    path, values = sample
    ds = open_virtual_dataset(path, parser=RawParser())
    back = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3).load()
    np.testing.assert_array_equal(back["air"].values, values["air"])
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    np.testing.assert_array_equal(back["lat"].values, values["lat"])
    assert float(back["height"]) == 2.0
    assert "height" in back.coords


def test_concat_virtual_datasets_and_read_back(tmp_path):
    rng = np.random.default_rng(1)
    parts, dss = [], []
    for i in range(3):
        t = np.arange(4 * i, 4 * i + 4, dtype="<i8")
        air = rng.normal(size=(4, 3)).astype("<f4")
        write_raw(
            tmp_path / f"f{i}.bin",
            {
                "time": (["time"], t, (4,), {"units": "hours since 2000-01-01"}),
                "air": (["time", "x"], air, (2, 3), {}),
            },
        )
        parts.append(air)
        dss.append(open_virtual_dataset(tmp_path / f"f{i}.bin", parser=RawParser()))
    combined = xr.combine_by_coords(
        dss[::-1], coords="minimal", compat="override", data_vars="minimal"
    )
    assert combined["air"].shape == (12, 3)
    assert len(combined["air"].data.manifest.used_paths()) == 3
    back = xr.open_zarr(combined.vz.to_store(), consolidated=False, zarr_format=3)
    np.testing.assert_array_equal(back["air"].values, np.concatenate(parts))
    assert (
        pickle.loads(pickle.dumps(combined))["air"].data.manifest == combined["air"].data.manifest
    )


def test_rename_paths_and_nbytes(sample):
    path, _ = sample
    ds = open_virtual_dataset(path, parser=RawParser(), loadable_variables=[])
    renamed = ds.vz.rename_paths(lambda p: p.replace("file://", "s3://bucket"))
    assert renamed["air"].data.manifest.used_paths() == ["s3://bucket" + str(path)]
    assert 0 < ds.vz.nbytes < 10_000
    assert ds.virtualize.nrefs() == ds.vz.nrefs()


def test_unknown_format_lists_known_formats(tmp_path):
    p = tmp_path / "x.weird"
    p.write_bytes(b"\x00\x01nothing known here" * 10)
    with pytest.raises(virtualizarr.errors.UnknownFormatError, match="Known formats"):
        open_virtual_dataset(p)


def test_loaded_string_coordinate_round_trips_through_the_store(sample):
    path, values = sample
    ds = open_virtual_dataset(path, parser=RawParser())
    ds = ds.assign_coords(station=("lat", np.array(["a", "bé", "ccc", "", "d"], dtype=object)))
    back = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3).load()
    assert list(back["station"].values) == ["a", "bé", "ccc", "", "d"]
    np.testing.assert_array_equal(back["air"].values, values["air"])


def test_open_data_reads_real_values_lazily(sample):
    path, values = sample
    ds = open_virtual_dataset(path, parser=RawParser())
    data = ds.vz.open_data()
    np.testing.assert_array_equal(data["air"].values, values["air"])
    assert data["time"].dtype.kind == "M"


def test_nbytes_counts_each_path_once():
    import sys

    url = "s3://bucket/" + "x" * 5000 + ".nc"  # a long path: counted per variable it would dominate
    arrays = {}
    for name in ("a", "b", "c"):
        meta = create_v3_array_metadata(
            shape=(10,), data_type="f4", chunk_shape=(5,), dimension_names=["t"]
        )
        manifest = ChunkManifest.from_arrays(paths=url, offsets=[0, 20], lengths=[20, 20])
        arrays[name] = ManifestArray(meta, manifest)
    ds = xr.Dataset({n: ("t", a) for n, a in arrays.items()})
    grids = sum(a.manifest.nbytes - sys.getsizeof(url) for a in arrays.values())
    assert ds.vz.nbytes == grids + sys.getsizeof(url)
    # a slice shares its parent's grids: they count once too
    ds2 = ds.assign(d=("u", ds["a"].data[:5]))
    assert ds2.vz.nbytes == ds.vz.nbytes
