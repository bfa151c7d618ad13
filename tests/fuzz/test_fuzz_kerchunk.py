"""Kerchunk JSON under bad input: hypothesis on generated reference documents.

Every document must open, or raise an exception from :mod:`virtualizarr.errors` naming the
file, without a big allocation (a corrupt shape or ``gen`` must not size anything).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtualizarr.errors import ParserError, VirtualiZarrError
from virtualizarr.parsers import KerchunkJSONParser
from virtualizarr.registry import ObjectStoreRegistry

BIG = st.sampled_from([0, 1, -1, 2**31, 2**63, 10**5, 10**9, 10**20])
SMALL = st.integers(0, 6)
NUM = st.one_of(SMALL, BIG)
# gen sizes: those past the parser's limit are refused at once; 10**4 keys stand for a large gen
# that is expanded (each key is a template render, so 10**5 would cost seconds per example)
GEN_STOP = st.one_of(SMALL, st.sampled_from([0, -1, 10**4, 2**31, 2**63, 10**9, 10**20]))
JUNK = st.one_of(
    st.none(), st.booleans(), st.text(max_size=4), st.lists(SMALL, max_size=2), st.floats()
)


@st.composite
def zarray(draw: st.DrawFn) -> Any:
    ndim = draw(st.integers(0, 3))
    doc = {
        "zarr_format": draw(st.sampled_from([2, 2, 2, 3, None])),
        "shape": draw(st.lists(NUM, min_size=ndim, max_size=ndim) | JUNK),
        "chunks": draw(st.lists(NUM, min_size=ndim, max_size=ndim) | JUNK),
        "dtype": draw(st.sampled_from(["<i4", ">f8", "|u1", "|O", "<U3", "xx", 7])),
        "fill_value": draw(st.one_of(st.none(), st.integers(-5, 5), st.just("NaN"), JUNK)),
        "order": draw(st.sampled_from(["C", "F", "Z"])),
        "filters": draw(st.one_of(st.none(), st.just([{"id": "shuffle"}]), JUNK)),
        "compressor": draw(st.one_of(st.none(), st.just({"id": "zlib", "level": 1}), JUNK)),
    }
    if draw(st.booleans()):
        doc["dimension_separator"] = draw(st.sampled_from([".", "/", "-"]))
    drop = draw(st.lists(st.sampled_from(sorted(doc)), max_size=2))
    return {k: v for k, v in doc.items() if k not in drop}


@st.composite
def chunk_ref(draw: st.DrawFn, target: str) -> Any:
    return draw(
        st.one_of(
            st.tuples(st.just(target), NUM, NUM).map(list),
            st.just([target]),
            st.text(max_size=8),
            st.just("base64:AAEC"),
            st.just("base64:!!"),
            JUNK,
        )
    )


@st.composite
def documents(draw: st.DrawFn, target: str) -> Any:
    refs: dict[str, Any] = {".zgroup": json.dumps({"zarr_format": 2})}
    for name in draw(st.lists(st.sampled_from(["a", "b", "c/d"]), max_size=2, unique=True)):
        za = draw(zarray())
        refs[f"{name}/.zarray"] = json.dumps(za) if draw(st.booleans()) else za
        dims = draw(st.lists(st.sampled_from(["x", "y"]), max_size=3) | JUNK)
        refs[f"{name}/.zattrs"] = json.dumps({"_ARRAY_DIMENSIONS": dims})
        for key in draw(
            st.lists(st.sampled_from(["0", "0.0", "1.0", "0.0.0", "9", "0/0", "x"]), max_size=3)
        ):
            refs[f"{name}/{key}"] = draw(chunk_ref(target))
    doc: dict[str, Any] = {"version": draw(st.sampled_from([None, 1, 1, 2]))}
    if doc["version"] is None:
        return refs
    doc["refs"] = refs
    if draw(st.booleans()):
        doc["templates"] = {"u": target}
    if draw(st.booleans()):
        doc["gen"] = [
            {
                "key": "a/{{i}}",
                "url": "{{u}}",
                "offset": "{{i * 8}}",
                "length": 8,
                "dimensions": {
                    "i": draw(st.one_of(st.builds(lambda s: {"stop": s}, GEN_STOP), JUNK))
                },
            }
        ]
    return doc


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_kerchunk_json_is_bounded_and_named(tmp_path: Path, data: st.DataObject) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(bytes(range(256)))
    doc = data.draw(documents(target.as_uri()))
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(doc))
    tracemalloc.start()
    try:
        store = KerchunkJSONParser()(str(path), ObjectStoreRegistry())
    except VirtualiZarrError as e:
        assert str(path) in str(e), str(e)  # noqa: PT017
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 128 << 20, f"peak {peak >> 20} MiB for {doc!r:.300}"
    for _, node in store.group.walk():
        assert node is not None


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"version": 1, "refs": ' + "[" * 50_000 + "]" * 50_000 + "}", "{" * 3],
)
def test_nested_or_broken_json_is_a_parser_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "refs.json"
    path.write_text(text)
    with pytest.raises(ParserError, match=r"refs\.json"):
        KerchunkJSONParser()(str(path), ObjectStoreRegistry())


def test_gen_over_a_billion_keys_is_refused(tmp_path: Path) -> None:
    """A gen entry of 1e9 keys is refused from its dimensions, before generating any."""
    doc = {
        "version": 1,
        "refs": {
            ".zgroup": '{"zarr_format": 2}',
            "a/.zarray": json.dumps(
                {
                    "zarr_format": 2,
                    "shape": [10**9],
                    "chunks": [1],
                    "dtype": "<i1",
                    "fill_value": 0,
                    "order": "C",
                    "filters": None,
                    "compressor": None,
                }
            ),
        },
        "gen": [
            {
                "key": "a/{{i}}",
                "url": "f.bin",
                "offset": "{{i}}",
                "length": 1,
                "dimensions": {"i": {"stop": 10**9}},
            }
        ],
    }
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ParserError, match="would generate 1000000000 references") as info:
        KerchunkJSONParser()(str(path), ObjectStoreRegistry())
    assert str(path) in str(info.value)


def test_huge_grid_of_one_element_chunks_is_refused(tmp_path: Path) -> None:
    """A 1e5 x 1e5 grid of 1-element chunks with one reference: refused, not 37 GiB."""
    doc = {
        ".zgroup": '{"zarr_format": 2}',
        "a/.zarray": json.dumps(
            {
                "zarr_format": 2,
                "shape": [10**5, 10**5],
                "chunks": [1, 1],
                "dtype": "<i1",
                "fill_value": 0,
                "order": "C",
                "filters": None,
                "compressor": None,
            }
        ),
        "a/.zattrs": '{"_ARRAY_DIMENSIONS": ["y", "x"]}',
        "a/0.0": "\x01",
    }
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(doc))
    tracemalloc.start()
    try:
        with pytest.raises(ParserError, match="chunk grid") as info:
            KerchunkJSONParser()(str(path), ObjectStoreRegistry())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert "'a'" in str(info.value)
    assert peak < 16 << 20
