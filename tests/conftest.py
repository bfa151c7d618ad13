from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtualizarr.testing.ground_truth import REAL_DATA, ground_truth

HAVE_REAL_DATA = (REAL_DATA / "ground_truth.json").exists()

requires_real_data = pytest.mark.skipif(
    not HAVE_REAL_DATA,
    reason=f"real sample data not found at {REAL_DATA} (only CI and developers have ../shared)",
)


def real_files(subdir: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Relative paths (as keys of ground_truth) of the real files in ``subdir``; [] without data."""
    if not HAVE_REAL_DATA:
        return []
    return sorted(
        k
        for k in ground_truth()
        if k.startswith(subdir + "/") and (not suffixes or k.endswith(suffixes))
    )


@pytest.fixture
def gt() -> dict:
    if not HAVE_REAL_DATA:
        pytest.skip("real sample data not available")
    return ground_truth()


# -- the HDF5 parser's two engines ---------------------------------------------------------------
# HDFParser reads metadata with our own reader (engine="own", the default) or with h5py
# (engine="h5py", the oracle and fallback). The HDF5 behaviour tests take ``hdf_parse`` and so
# run once per engine. Our reader silently falls back to h5py for what it does not implement;
# ``hdf_parse`` fails the "own" run when that happens, so an "own" pass is our reader's pass.

HDF5_ENGINES = ("own", "h5py")
HDFParse = Callable[..., Any]
"""The type of ``hdf_parse``: ``(url, registry=None, *, fallback=None, **options) -> ManifestStore``."""
HDF5_FALLBACK_LOG = "read with h5py"
"""What HDFParser logs (logger ``virtualizarr.parsers.hdf5.parser``) when our reader gives up."""


@pytest.fixture(params=HDF5_ENGINES)
def hdf_engine(request: pytest.FixtureRequest) -> str:
    """``"own"`` then ``"h5py"``: the engine ``hdf_parse`` uses (parametrize it to narrow)."""
    return request.param


@pytest.fixture
def hdf_parse(hdf_engine: str, caplog: pytest.LogCaptureFixture) -> HDFParse:
    """``hdf_parse(url, registry=None, *, fallback=None, **options)``: one file through
    ``HDFParser(engine=hdf_engine, **options)``.

    With engine "own" it fails if our reader fell back to h5py, unless ``fallback`` is a
    regex of the structure it is expected to fall back for (which must then be logged).

    >>> # store = hdf_parse(tmp_path / "a.nc", group="sub")
    """
    import logging
    import re

    from tests._support import parse
    from virtualizarr.parsers import HDFParser

    def call(url: str | Path, registry: Any = None, *, fallback: str | None = None, **options: Any):
        with caplog.at_level(logging.INFO, logger="virtualizarr.parsers.hdf5.parser"):
            first = len(caplog.records)
            try:
                return parse(HDFParser, url, registry, engine=hdf_engine, **options)
            finally:  # also when it raises: the error must be our reader's, not h5py's
                logged = [r.getMessage() for r in caplog.records[first:]]
                fell_back = [m for m in logged if HDF5_FALLBACK_LOG in m]
                if hdf_engine == "own" and fallback is None:
                    assert not fell_back, f"our HDF5 reader fell back to h5py: {fell_back}"
                elif hdf_engine == "own":
                    assert any(re.search(fallback, m) for m in fell_back), (fallback, logged)

    return call


# -- loopback servers: a real S3 API (moto) and an HTTP server with Range support --------------
# Both are session fixtures so the whole suite pays for one start-up each; tests keep apart by
# using their own bucket (``s3_server.make_bucket()``) or directory (``http_server.mkdir()``).


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """A running moto S3 server on 127.0.0.1, with helpers to fill it and reach it."""

    access_key_id = "testing"
    secret_access_key = "testing"
    region = "us-east-1"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        """``http://127.0.0.1:PORT``."""

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique one by default) and return its name."""
        import uuid

        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> str:
        """Upload ``data`` (``kwargs`` go to ``put_object``, e.g. ``ACL="public-read"``) and
        return its ``s3://bucket/key`` URL."""
        self.client().put_object(Bucket=bucket, Key=key, Body=data, **kwargs)
        return f"s3://{bucket}/{key}"

    def store(self, bucket: str, **kwargs: Any) -> Any:
        """An obstore ``S3Store`` of ``bucket`` on this server."""
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            client_options={"allow_http": True},
            **kwargs,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free loopback port for the whole session (see ``S3Server``)."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class HTTPServer:
    """A loopback HTTP server of the files under ``root`` (GET with Range, and HEAD)."""

    def __init__(self, root: Path, url: str, requests: list[tuple[str, str, str | None]]) -> None:
        self.root = root
        self.url = url
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        self.requests = requests
        """Every request served so far: ``(method, path, Range header or None)``."""

    def mkdir(self) -> Path:
        """A fresh directory under ``root`` for one test's files."""
        import tempfile

        return Path(tempfile.mkdtemp(dir=self.root))

    def url_for(self, path: Path) -> str:
        """The URL serving a file under ``root``."""
        return f"{self.url}/{path.relative_to(self.root).as_posix()}"


def _range_handler(root: Path, log: list[tuple[str, str, str | None]]) -> type:
    import http.server
    import re

    class RangeHandler(http.server.BaseHTTPRequestHandler):
        """GET/HEAD of files under ``root``, honouring single ``Range: bytes=`` requests
        (which ``SimpleHTTPRequestHandler`` ignores, answering 200 with the whole file)."""

        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def _file(self) -> Path | None:
            log.append((self.command, self.path, self.headers.get("Range")))
            rel = self.path.split("?", 1)[0].lstrip("/")
            from urllib.parse import unquote

            path = (root / unquote(rel)).resolve()
            if root.resolve() not in path.parents or not path.is_file():
                return None
            return path

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            path = self._file()
            if path is None:
                self._send(404, {})
                return
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
            self.end_headers()

        def do_GET(self) -> None:
            path = self._file()
            if path is None:
                self._send(404, {})
                return
            data = path.read_bytes()
            size = len(data)
            header = self.headers.get("Range")
            if not header:
                self._send(200, {"Accept-Ranges": "bytes"}, data)
                return
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
            if m is None or m.groups() == ("", ""):
                self._send(416, {"Content-Range": f"bytes */{size}"})
                return
            first, last = m.groups()
            if first == "":  # suffix: the last N bytes
                start, end = max(size - int(last), 0), size - 1
            else:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            if start >= size or end < start:
                self._send(416, {"Content-Range": f"bytes */{size}"})
                return
            headers = {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"}
            self._send(206, headers, data[start : end + 1])

    return RangeHandler


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPServer]:
    """A ThreadingHTTPServer with Range support on a free loopback port (see ``HTTPServer``)."""
    import http.server
    import threading

    root = tmp_path_factory.mktemp("http_root")
    log: list[tuple[str, str, str | None]] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _range_handler(root, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HTTPServer(root, f"http://127.0.0.1:{server.server_address[1]}", log)
    finally:
        server.shutdown()
        server.server_close()
