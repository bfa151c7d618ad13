"""virtualizarr.io: byte ranges and a buffered file-like reader over obstore (local, S3, HTTP)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HTTPServer, S3Server
from virtualizarr.io import ObstoreReader, file_size, open_reader, read_range
from virtualizarr.registry import ObjectStoreRegistry

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(PAYLOAD)
    return path


def test_reader_behaves_like_a_file(local_file: Path) -> None:
    with open_reader(str(local_file), block_size=4096) as f:
        assert isinstance(f, ObstoreReader)
        assert f.readable()
        assert f.seekable()
        assert f.size == len(PAYLOAD)
        assert f.read(10) == PAYLOAD[:10]
        assert f.tell() == 10
        assert f.seek(5000) == 5000
        assert f.read(7000) == PAYLOAD[5000:12000]  # larger than a block
        assert f.seek(-3, io.SEEK_CUR) == 11997
        assert f.read(3) == PAYLOAD[11997:12000]
        assert f.seek(-4, io.SEEK_END) == len(PAYLOAD) - 4
        assert f.read(100) == PAYLOAD[-4:]  # short read at the end
        assert f.read(1) == b""
        f.seek(len(PAYLOAD) + 10)
        assert f.read() == b""
        f.seek(100)
        buf = bytearray(50)
        assert f.readinto(buf) == 50
        assert bytes(buf) == PAYLOAD[100:150]
        f.seek(len(PAYLOAD) - 20)
        assert f.read() == PAYLOAD[-20:]
        f.seek(0)
        assert f.read(-1) == PAYLOAD
    assert f.closed


def test_reader_in_buffered_wrapper(local_file: Path) -> None:
    with io.BufferedReader(open_reader(str(local_file))) as f:
        f.seek(1000)
        assert f.read(24) == PAYLOAD[1000:1024]


def test_relative_paths_are_normalised(local_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(local_file.parent)
    assert read_range("payload.bin", 3, 4) == PAYLOAD[3:7]
    assert file_size("./payload.bin") == len(PAYLOAD)
    assert open_reader("payload.bin").url == f"file://{local_file}"


def test_read_range_and_file_size(local_file: Path) -> None:
    url = f"file://{local_file}"
    assert read_range(url, 0, 16) == PAYLOAD[:16]
    assert read_range(url, len(PAYLOAD) - 5, 100) == PAYLOAD[-5:]  # fewer if the file ends first
    assert read_range(url, len(PAYLOAD), 10) == b""  # regression: raised FileNotFoundError
    assert read_range(url, len(PAYLOAD) + 100, 10) == b""
    assert file_size(url) == len(PAYLOAD)


def test_missing_files(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.bin")
    for call in (
        lambda: read_range(gone, 0, 4),
        lambda: file_size(gone),
        lambda: open_reader(gone),
    ):
        with pytest.raises(FileNotFoundError, match=r"gone\.bin"):
            call()


def _h5(path: Path) -> np.ndarray:
    h5py = pytest.importorskip("h5py")
    data = np.arange(3000, dtype="<f8").reshape(30, 100)
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=data, chunks=(10, 50), compression="gzip")
        f.attrs["title"] = "through obstore"
    return data


def _read_h5(url: str, registry: ObjectStoreRegistry | None = None) -> tuple[np.ndarray, str]:
    h5py = pytest.importorskip("h5py")
    with open_reader(url, registry) as f, h5py.File(f, "r") as h5:
        return h5["v"][...], h5.attrs["title"]


def test_h5py_reads_through_reader(tmp_path: Path) -> None:
    data = _h5(tmp_path / "f.h5")
    values, title = _read_h5(str(tmp_path / "f.h5"))
    np.testing.assert_array_equal(values, data)
    assert title == "through obstore"


@pytest.mark.network
def test_http(http_server: HTTPServer) -> None:
    directory = http_server.mkdir()
    (directory / "payload.bin").write_bytes(PAYLOAD)
    url = http_server.url_for(directory / "payload.bin")
    assert file_size(url) == len(PAYLOAD)
    assert read_range(url, 1000, 10) == PAYLOAD[1000:1010]
    assert read_range(url, len(PAYLOAD), 10) == b""
    # read-ahead: 300 small sequential reads cost a handful of range requests
    n_before = len(http_server.requests)
    with open_reader(url, block_size=64 * 1024) as f:
        chunks = [f.read(1000) for _ in range(300)]
    assert b"".join(chunks) == PAYLOAD[:300_000]
    gets = [r for r in http_server.requests[n_before:] if r[0] == "GET"]
    assert 1 <= len(gets) <= 6
    data = _h5(directory / "f.h5")
    values, _ = _read_h5(http_server.url_for(directory / "f.h5"))
    np.testing.assert_array_equal(values, data)
    with pytest.raises(FileNotFoundError):
        file_size(http_server.url_for(directory) + "/gone.bin")


@pytest.mark.s3
def test_s3(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket()
    url = s3_server.put(bucket, "a/payload.bin", PAYLOAD)
    reg = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    assert file_size(url, reg) == len(PAYLOAD)
    assert read_range(url, 5, 5, reg) == PAYLOAD[5:10]
    assert read_range(url, len(PAYLOAD) - 2, 5, reg) == PAYLOAD[-2:]
    data = _h5(tmp_path / "f.h5")
    h5_url = s3_server.put(bucket, "a/f.h5", (tmp_path / "f.h5").read_bytes())
    values, _ = _read_h5(h5_url, reg)
    np.testing.assert_array_equal(values, data)
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/a/gone"):
        read_range(f"s3://{bucket}/a/gone", 0, 1, reg)
