"""GeoTIFF georeferencing for the TIFF parser: attributes, affine transform, x/y coordinates.

The transform is in rasterio/affine order ``(a, b, c, d, e, f)`` and maps the *corner*
of pixel ``(col, row)`` to ``x = a*col + b*row + c``, ``y = d*col + e*row + f``. It comes
from ModelPixelScale + ModelTiepoint or from ModelTransformation; a PixelIsPoint raster
is shifted by half a pixel so that, as in GDAL, the transform always refers to corners
and pixel centres sit at ``col + 0.5``, ``row + 0.5``.

>>> transform_from_tags(scale=[60.0, 60.0, 0.0], tiepoint=[0, 0, 0, 440720.0, 3751320.0, 0])
(60.0, 0.0, 440720.0, 0.0, -60.0, 3751320.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.conversion import inline_array
from virtualizarr.manifests import ManifestArray
from virtualizarr.manifests.metadata import to_json_safe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tifffile import TiffPage

__all__ = ["coordinate_arrays", "geo_attributes", "page_transform", "transform_from_tags"]

_SCALE, _TIEPOINT, _TRANSFORM, _GEOKEYS = 33550, 33922, 34264, 34735


def transform_from_tags(
    *,
    scale: Sequence[float] | None = None,
    tiepoint: Sequence[float] | None = None,
    matrix: Sequence[float] | None = None,
    pixel_is_point: bool = False,
) -> tuple[float, ...] | None:
    """The corner-based affine transform of a GeoTIFF's model tags, or None."""
    if matrix is not None and len(matrix) == 16:
        m = [float(v) for v in matrix]
        a, b, c, d, e, f = m[0], m[1], m[3], m[4], m[5], m[7]
    elif scale is not None and tiepoint is not None and len(tiepoint) == 6:
        # one tiepoint (i, j, k, X, Y, Z) + pixel scale; several tiepoints are GCPs (no affine)
        sx, sy = float(scale[0]), float(scale[1])
        i, j, x, y = (float(tiepoint[k]) for k in (0, 1, 3, 4))
        a, b, c, d, e, f = sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy
    else:
        return None
    if pixel_is_point:
        c -= 0.5 * (a + b)
        f -= 0.5 * (d + e)
    return (a, b, c, d, e, f)


def page_transform(page: TiffPage) -> tuple[float, ...] | None:
    """The transform of one IFD from its own tags (None when it has none)."""
    tags = page.tags
    if _TIEPOINT not in tags and _TRANSFORM not in tags:
        return None
    point = False
    if _GEOKEYS in tags:
        raster_type = (page.geotiff_tags or {}).get("GTRasterTypeGeoKey")
        point = raster_type is not None and int(raster_type) == 2
    return transform_from_tags(
        scale=tags.valueof(_SCALE),
        tiepoint=tags.valueof(_TIEPOINT),
        matrix=tags.valueof(_TRANSFORM),
        pixel_is_point=point,
    )


def geo_attributes(page: TiffPage) -> dict[str, Any]:
    """GeoTIFF keys and model tags as JSON-safe attributes (enums become integers)."""
    attrs: dict[str, Any] = {}
    if _GEOKEYS in page.tags:
        for key, value in (page.geotiff_tags or {}).items():
            if key in ("KeyDirectoryVersion", "KeyRevision", "KeyRevisionMinor"):
                continue
            attrs[key] = int(value) if hasattr(value, "value") and hasattr(value, "name") else value
        for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
            code = attrs.get(key)
            if isinstance(code, int) and 1024 <= code < 32767:  # 32767: user-defined
                attrs.setdefault("crs", f"EPSG:{code}")
    else:
        for tag, key in (
            (_SCALE, "ModelPixelScale"),
            (_TIEPOINT, "ModelTiepoint"),
            (_TRANSFORM, "ModelTransformation"),
        ):
            if tag in page.tags:
                attrs[key] = list(page.tags.valueof(tag))
    return to_json_safe(attrs)


def _inline(values: np.ndarray, dim: str, attrs: dict[str, Any]) -> ManifestArray:
    # the dtype's default fill and no compression: x/y are small 1-D float64 axes
    return inline_array(
        np.asarray(values, dtype="<f8"), dim, attrs, fill_value=None, compress_above=None
    )


def coordinate_arrays(
    transform: Sequence[float], width: int, height: int, x_name: str, y_name: str, geo: bool = True
) -> dict[str, ManifestArray]:
    """Inlined 1-D ``x``/``y`` arrays of pixel centres, or {} for a rotated transform."""
    a, b, c, d, e, f = transform
    if b or d or not width or not height:
        return {}
    x = c + a * (np.arange(width) + 0.5)
    y = f + e * (np.arange(height) + 0.5)
    kind = "projection" if geo else "image"
    return {
        x_name: _inline(
            x, x_name, {"axis": "X", "long_name": f"{kind} x coordinate of pixel centres"}
        ),
        y_name: _inline(
            y, y_name, {"axis": "Y", "long_name": f"{kind} y coordinate of pixel centres"}
        ),
    }
