"""ManifestGroup: virtual arrays, attributes and child groups, like a Zarr hierarchy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from virtualizarr.manifests.array import ManifestArray
from virtualizarr.manifests.metadata import to_json_safe

__all__ = ["ManifestGroup"]


class ManifestGroup:
    """A node of a virtual Zarr hierarchy. No I/O happens here.

    >>> g = ManifestGroup(arrays={}, groups={"child": ManifestGroup(attributes={"a": 1})})
    >>> g["child"].attributes
    {'a': 1}
    """

    __slots__ = ("_arrays", "_attributes", "_groups")

    def __init__(
        self,
        arrays: Mapping[str, ManifestArray] | None = None,
        groups: Mapping[str, ManifestGroup] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        arrays = dict(arrays or {})
        groups = dict(groups or {})
        for name, arr in arrays.items():
            if not isinstance(arr, ManifestArray):
                raise TypeError(f"array {name!r} must be a ManifestArray, got {type(arr).__name__}")
        for name, grp in groups.items():
            if not isinstance(grp, ManifestGroup):
                raise TypeError(f"group {name!r} must be a ManifestGroup, got {type(grp).__name__}")
        clash = set(arrays) & set(groups)
        if clash:
            raise ValueError(f"names used for both an array and a group: {sorted(clash)}")
        for name in [*arrays, *groups]:
            if not name or "/" in name:
                raise ValueError(f"invalid node name {name!r}: must be non-empty without '/'")
        self._arrays = arrays
        self._groups = groups
        self._attributes = dict(attributes or {})

    @property
    def arrays(self) -> dict[str, ManifestArray]:
        return self._arrays

    @property
    def groups(self) -> dict[str, ManifestGroup]:
        return self._groups

    @property
    def attributes(self) -> dict[str, Any]:
        return self._attributes

    def __getitem__(self, path: str) -> ManifestArray | ManifestGroup:
        """A member by name, or a nested one by ``"a/b/c"``."""
        node: ManifestArray | ManifestGroup = self
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, ManifestGroup):
                raise KeyError(path)
            if part in node._arrays:
                node = node._arrays[part]
            elif part in node._groups:
                node = node._groups[part]
            else:
                raise KeyError(path)
        return node

    def __iter__(self) -> Iterator[str]:
        yield from self._arrays
        yield from self._groups

    def __len__(self) -> int:
        return len(self._arrays) + len(self._groups)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, ManifestArray | ManifestGroup]]:
        """Every node below (and including) this one, with its path from here."""
        yield prefix, self
        for name, arr in self._arrays.items():
            yield f"{prefix}/{name}".lstrip("/"), arr
        for name, grp in self._groups.items():
            yield from grp.walk(f"{prefix}/{name}".lstrip("/"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ManifestGroup):
            return NotImplemented
        return (
            to_json_safe(self._attributes) == to_json_safe(other._attributes)
            and self._groups == other._groups
            and self._arrays.keys() == other._arrays.keys()
            and all(_arrays_equal(self._arrays[k], other._arrays[k]) for k in self._arrays)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ManifestGroup(arrays={list(self._arrays)}, groups={list(self._groups)}, "
            f"attributes={list(self._attributes)})"
        )


def _arrays_equal(a: ManifestArray, b: ManifestArray) -> bool:
    return (
        to_json_safe(a.metadata.to_dict()) == to_json_safe(b.metadata.to_dict())
        and a.manifest == b.manifest
    )
