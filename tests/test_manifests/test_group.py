"""ManifestGroup: arrays, attributes and child groups."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata


def small(path: str = "s3://bucket/a.nc", offset: int = 0) -> ManifestArray:
    meta = create_v3_array_metadata(shape=(4,), data_type="<i4", chunk_shape=(2,))
    return ManifestArray(
        meta, ChunkManifest.from_arrays(paths=path, offsets=[offset, offset + 8], lengths=[8, 8])
    )


@pytest.fixture
def tree() -> ManifestGroup:
    inner = ManifestGroup(arrays={"c": small()}, attributes={"level": 2})
    child = ManifestGroup(arrays={"b": small()}, groups={"inner": inner}, attributes={"level": 1})
    return ManifestGroup(
        arrays={"a": small()}, groups={"child": child}, attributes={"title": "root", "n": 3}
    )


def test_members(tree: ManifestGroup) -> None:
    assert list(tree) == ["a", "child"]
    assert len(tree) == 2
    assert set(tree.arrays) == {"a"}
    assert set(tree.groups) == {"child"}
    assert tree.attributes == {"title": "root", "n": 3}
    assert tree["child"].attributes == {"level": 1}
    assert isinstance(tree["child/inner/c"], ManifestArray)
    assert tree["/child/inner/"].attributes == {"level": 2}
    assert tree[""] is tree
    for bad in ["nope", "a/b", "child/nope"]:
        with pytest.raises(KeyError):
            tree[bad]


def test_walk(tree: ManifestGroup) -> None:
    paths = [p for p, _ in tree.walk()]
    assert paths == ["", "a", "child", "child/b", "child/inner", "child/inner/c"]


def test_equality_and_pickle(tree: ManifestGroup) -> None:
    assert tree == pickle.loads(pickle.dumps(tree))
    other = ManifestGroup(
        arrays={"a": small(offset=4)}, groups=tree.groups, attributes=tree.attributes
    )
    assert tree != other
    assert tree != ManifestGroup(arrays=tree.arrays, groups=tree.groups, attributes={"title": "x"})
    # numpy attribute values compare as their JSON form
    g1 = ManifestGroup(attributes={"v": np.float32(1.5), "l": np.array([1, 2])})
    assert g1 == ManifestGroup(attributes={"v": 1.5, "l": [1, 2]})


def test_validation() -> None:
    with pytest.raises(TypeError, match="must be a ManifestArray"):
        ManifestGroup(arrays={"a": np.zeros(3)})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be a ManifestGroup"):
        ManifestGroup(groups={"g": {}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="both an array and a group"):
        ManifestGroup(arrays={"x": small()}, groups={"x": ManifestGroup()})
    for name in ["", "a/b"]:
        with pytest.raises(ValueError, match="invalid node name"):
            ManifestGroup(arrays={name: small()})


def test_repr(tree: ManifestGroup) -> None:
    assert repr(tree) == "ManifestGroup(arrays=['a'], groups=['child'], attributes=['title', 'n'])"
