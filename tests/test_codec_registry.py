"""Our Zarr v3 codecs: one base (codecs.wrap), registered only through entry points.

* A fresh process that never imports a parser finds every codec we write into references,
  by its Zarr v3 name (zarr's registry) and by its numcodecs id (kerchunk / Zarr v2).
* Importing a codec module registers nothing (no import side effects).
* Decoding runs off the event loop; decode-only codecs refuse to encode, naming themselves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from importlib.metadata import entry_points

import numcodecs
import numpy as np
import pytest
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.dtype import parse_dtype

from virtualizarr.codecs.wrap import DecodeOnly, WrappedBytesBytesCodec, WrappedCodec

pytest.importorskip("imagecodecs")

# One valid configuration per codec id, as the parsers write them into references.
CONFIGS: dict[str, dict] = {
    "virtualizarr.grib": {"dtype": "<f4"},
    "virtualizarr.pad": {"size": 8, "min_size": 4},
    "virtualizarr.tiff_jpeg": {"shape": [8, 8, 1]},
    "virtualizarr.fits_tile": {"algorithm": "GZIP_1", "shape": [4, 4], "dtype": ">i2"},
    "virtualizarr.record_field": {"record_size": 8, "offset": 0, "size": 4, "records": 2},
    "virtualizarr.sign_flip": {"itemsize": 2},
    "imagecodecs_lzw": {},
    "imagecodecs_packbits": {},
    "imagecodecs_bitorder": {},
    "imagecodecs_delta": {"axis": -1},
    "hdf5_lzf": {},
    "hdf5_bitshuffle": {"elementsize": 4, "blocksize": 0, "cname": "lz4", "clevel": 3},
    "imagecodecs_lz4h5": {"blocksize": 0},
}


def _ours(group: str) -> list[str]:
    return sorted(
        e.name
        for e in entry_points(group=group)
        if e.value.startswith(("virtualizarr.", "imagecodecs.numcodecs"))
    )


def _numcodec_id(v3_name: str) -> str:
    return v3_name.removeprefix("numcodecs.")


def test_every_zarr_codec_has_a_numcodecs_twin() -> None:
    v3 = _ours("zarr.codecs")
    v2 = set(_ours("numcodecs.codecs"))
    assert v3, "no zarr.codecs entry points: reinstall with pip install -e ."
    assert {_numcodec_id(n) for n in v3} <= v2


def test_fresh_process_finds_every_codec_by_name() -> None:
    names = [n for n in _ours("zarr.codecs") if CONFIGS.get(_numcodec_id(n)) is not None]
    assert len(names) >= 10
    script = f"""
import json, sys
import numcodecs
from zarr.registry import get_codec_class
configs = json.loads(sys.argv[1])
for name in {names!r}:
    conf = configs[name.removeprefix("numcodecs.")]
    codec = get_codec_class(name).from_dict({{"name": name, "configuration": conf}})
    assert codec.to_dict()["name"] == name, codec.to_dict()
    v2 = numcodecs.get_codec({{"id": name.removeprefix("numcodecs."), **conf}})
    assert v2.codec_id == name.removeprefix("numcodecs."), v2
assert not any(m == "virtualizarr.parsers" or m.startswith("virtualizarr.parsers.")
               for m in sys.modules), "a parser was imported"
assert "xarray" not in sys.modules, "loading a codec imported xarray"
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(CONFIGS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


def test_importing_codec_modules_registers_nothing() -> None:
    script = """
import numcodecs.registry as reg
before = set(reg.codec_registry)
import virtualizarr.codecs.fits, virtualizarr.codecs.grib, virtualizarr.codecs.tiff
import virtualizarr.codecs.hdf5_bitshuffle, virtualizarr.codecs.hdf5_lzf
import virtualizarr.codecs.imagecodecs_wrappers
print(sorted(set(reg.codec_registry) - before))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def _spec(shape: tuple[int, ...], dtype: str) -> ArraySpec:
    return ArraySpec(
        shape=shape,
        dtype=parse_dtype(np.dtype(dtype), zarr_format=3),
        fill_value=0,
        config=ArrayConfig.from_dict({}),
        prototype=default_buffer_prototype(),
    )


class _ThreadRecordingZlib(WrappedBytesBytesCodec, codec_name="test.zlib", numcodec=numcodecs.Zlib):
    threads: list[int] = []  # noqa: RUF012  (class-level record, read by the test)

    def _decode_sync(self, chunk_bytes, chunk_spec):  # type: ignore[no-untyped-def]
        type(self).threads.append(threading.get_ident())
        return super()._decode_sync(chunk_bytes, chunk_spec)


def test_decoding_runs_off_the_event_loop() -> None:
    codec = _ThreadRecordingZlib(level=1)
    data = np.arange(16, dtype="<i4").tobytes()
    buf = default_buffer_prototype().buffer.from_bytes(numcodecs.Zlib(level=1).encode(data))

    async def run() -> tuple[bytes, int]:
        out = await codec._decode_single(buf, _spec((16,), "<i4"))
        return out.to_bytes(), threading.get_ident()

    decoded, loop_thread = asyncio.run(run())
    assert decoded == data
    assert _ThreadRecordingZlib.threads
    assert _ThreadRecordingZlib.threads[-1] != loop_thread


def test_decode_only_codecs_refuse_to_encode() -> None:
    from virtualizarr.codecs.fits import FitsTileCodec, RecordFieldCodec
    from virtualizarr.codecs.grib import GribCodec
    from virtualizarr.codecs.tiff import TiffJpegCodec

    for cls in (GribCodec, FitsTileCodec, RecordFieldCodec, TiffJpegCodec):
        assert issubclass(cls, DecodeOnly)
        assert issubclass(cls, WrappedCodec)
    grib = GribCodec(dtype="<f4")
    with pytest.raises(NotImplementedError, match=r"virtualizarr\.grib only decodes"):
        asyncio.run(grib._encode_single(None, _spec((2,), "<f4")))


def test_hdf5_codecs_use_the_public_base() -> None:
    from virtualizarr.codecs.hdf5_bitshuffle import Bitshuffle
    from virtualizarr.codecs.hdf5_lz4 import LZ4H5
    from virtualizarr.codecs.hdf5_lzf import LZF
    from virtualizarr.codecs.hdf5_szip import Szip

    for cls in (Bitshuffle, LZ4H5, LZF, Szip):
        assert issubclass(cls, WrappedBytesBytesCodec), cls
        assert not any(b.__module__.startswith("zarr.codecs.numcodecs") for b in cls.__mro__)
    lzf = LZF()
    assert lzf.to_dict() == {"name": "numcodecs.hdf5_lzf", "configuration": {}}
    assert LZF.from_dict(lzf.to_dict()) == lzf
