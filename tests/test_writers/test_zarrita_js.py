"""A non-Python Zarr reader uses our kerchunk JSON: zarrita.js's ReferenceStore under node.

zarrita and @zarrita/storage are installed from npm once per session into a temporary
folder; chunk URLs are renamed to a loopback HTTP server that answers Range requests.
Skipped where ``node``/``npm`` are missing or npm cannot install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.test_writers.test_kerchunk import hdf5_virtual_dataset, nc_file  # noqa: F401
from virtualizarr.writers.kerchunk import to_kerchunk

h5py = pytest.importorskip("h5py")

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
    ),
]

SCRIPT = Path(__file__).parent / "js" / "read_refs.mjs"


@pytest.fixture(scope="session")
def zarrita_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with zarrita + @zarrita/storage installed and our reader script."""
    folder = tmp_path_factory.mktemp("zarrita")
    (folder / "package.json").write_text(
        '{"name": "vz-zarrita-test", "private": true, "type": "module"}'
    )
    cmd = ["npm", "install", "--no-audit", "--no-fund", "--silent", "zarrita", "@zarrita/storage"]
    try:
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"npm install zarrita failed: {getattr(e, 'stderr', b'')!r:.300}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` / ``bytes=-n`` support."""

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if rng is None or not path.is_file():
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        size = path.stat().st_size
        if m is None or (not m[1] and not m[2]):
            self.send_error(416)
            return None
        start, end = (
            (int(m[1]), int(m[2]) if m[2] else size - 1) if m[1] else (size - int(m[2]), size - 1)
        )
        end = min(end, size - 1)
        if start > end:
            self.send_error(416)
            return None
        f = open(path, "rb")  # noqa: SIM115  (the base class closes it after copying)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Limited(f, end - start + 1)


class _Limited:
    """A file object that stops after ``n`` bytes (what copyfile needs for a range)."""

    def __init__(self, f, n: int) -> None:  # type: ignore[no-untyped-def]
        self._f, self._n = f, n

    def read(self, size: int = -1) -> bytes:
        size = self._n if size < 0 else min(size, self._n)
        data = self._f.read(size)
        self._n -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()

    def handler(*args, **kwargs):  # type: ignore[no-untyped-def]
        return RangeHandler(*args, directory=str(root), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_zarrita(folder: Path, refs_url: str, names: list[str]) -> dict:
    out = subprocess.run(
        ["node", SCRIPT.name, refs_url, *names],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_zarrita_reads_our_kerchunk_json(
    zarrita_dir: Path,
    http_root: tuple[Path, str],
    nc_file: Path,  # noqa: F811
) -> None:
    root, base = http_root
    served = root / nc_file.name
    shutil.copy(nc_file, served)
    ds = hdf5_virtual_dataset(served, loadable=("time", "lat", "lon"))
    ds = ds.vz.rename_paths(lambda url: f"{base}/{url.rsplit('/', 1)[1]}")
    to_kerchunk(ds, root / "refs.json", format="json", inline_threshold=64)
    names = ["air", "packed", "big", "lat2d", "time", "lat"]
    got = run_zarrita(zarrita_dir, f"{base}/refs.json", names)
    with h5py.File(nc_file) as f:
        for name in names:
            expected = f[name][...]  # raw stored values; unwritten chunks read the fill value
            arr = got[name]
            assert arr["shape"] == list(expected.shape), name
            values = np.array(
                [np.nan if v == "NaN" else v for v in arr["data"]], dtype=expected.dtype
            )
            np.testing.assert_array_equal(values.reshape(expected.shape), expected, err_msg=name)
