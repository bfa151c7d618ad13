"""The local benchmarks' workloads on an old revision and on the working tree, alternately.

Issue 10 asks that no benchmark in ``benchmarks/`` be slower than at 8b118c4. The scripts
changed since (rows added, options renamed), so comparing their tables compares different
code. Here the SAME workload code drives each revision through its public API: one worker
process per revision (``PYTHONPATH=<revision>/src``), each workload set up in both (files,
datasets, one untimed warm-up call), then timed old, new, old, new, ... ``--rounds`` times, so
load from other processes hits both alike. Workloads cover the seven benchmarks of 8b118c4:

- hdf5_virtualize: ``HDFParser()(url, registry)`` and ``open_virtual_dataset`` on the
  14,016- and 140,160-chunk NetCDF4 files; every real NetCDF4/HDF5 and netCDF-3 file;
- netcdf3_header: ``parse_header`` and ``NetCDF3Parser()(url)`` on a 367-variable header;
- combine_and_read: ``open_virtual_mfdataset`` of 100 files (serial, threads, processes),
  a mean read through ``open_icechunk`` and through fsspec ``reference://`` on our JSON;
- store_read: every chunk of one variable of 20 files through ``ManifestStore.get``
  (async), ``get_partial_values``, ``get_sync``, zarr's default and fused pipelines,
  ``ds.vz.open_data()`` and ``ds.vz.open_data(chunks={})`` (dask);
- kerchunk_write: ``to_kerchunk`` dict/JSON/parquet of 140,160 references, read back;
- icechunk_write: ``to_icechunk`` of 1,000,000 references and the commit;
- manifest_memory: the five ways to build a 1,000,000-chunk manifest (time, and bytes
  retained per reference with tracemalloc).

    python benchmarks/compare_revisions.py [--old 8b118c4|PATH] [--new PATH|REV]
        [--rounds 5] [--only combine,store] [--profile WORKLOAD-SUBSTRING]

``--old``/``--new`` take a checkout folder or a git revision (checked out with ``git
worktree add`` into a temporary folder, removed afterwards); ``--new`` defaults to this
working tree. Columns: median wall seconds and median CPU seconds per call (the worker's
process time, all threads, plus its child processes'), the new/old ratio of each and of the
best (least) CPU seconds, and the verdict on CPU time (on a shared, loaded machine the fairer
measure; load only adds to it, so the best call is the steadiest estimate): ``ok`` when new
<= 1.05 x old by median and by best; ``SLOWER`` when above by both and at least 75% of the
(old, new) sample pairs have new > old; ``noise`` otherwise. ``out`` flags a workload
whose result (reference count, mean value, ...) differs between revisions: then the two
did different work. Rows at the end give retained and peak traced memory (tracemalloc).
``--profile`` runs the matching workloads under cProfile in both revisions and prints the
top functions of each.

The workers live through all workloads (as a user's session would), so caches that last
across calls in a process (an HDF5 attribute cache, a kept process pool) count for a
revision that has them. Every workload's result is compared between the revisions (a
mean read through our codecs included) before it is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = REPO.parent / "shared" / "data" / "real"
TOLERANCE = 1.05

# ---------------------------------------------------------------------------------------------
# worker side: runs in a process with PYTHONPATH=<revision>/src; only public API of both
# revisions (and module paths that exist in both) is used below.


@dataclass
class Job:
    """One workload set up in a worker: ``run`` is timed, ``prepare`` (if any) runs untimed
    before each call, ``check`` turns a result into something comparable across revisions."""

    run: Callable[[], Any]
    prepare: Callable[[], None] | None = None
    inner: int = 1
    check: Callable[[Any], Any] = lambda r: None
    memory: bool = False
    per_ref: int = 0  # references built, to report retained bytes per reference
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _registry() -> Any:
    from virtualizarr.registry import ObjectStoreRegistry

    return ObjectStoreRegistry()


def _manifest_check(store: Any) -> list:
    """Reference count and offset sum of every array of a parser's ManifestStore."""
    out = []
    for name, arr in sorted(store.group.arrays.items()):
        m = arr.manifest
        out.append([name, len(m), int(m.offsets.sum())])
    return out


def _ds_check(ds: Any) -> list:
    return [sorted(map(str, ds.variables)), ds.vz.nrefs()]


def job_hdf5_parser(p: dict) -> Job:
    from virtualizarr.parsers import HDFParser

    reg = _registry()
    return Job(lambda: HDFParser()(p["path"], reg), check=_manifest_check, memory=True)


def job_open_virtual_dataset(p: dict) -> Job:
    from virtualizarr import open_virtual_dataset

    return Job(lambda: open_virtual_dataset(p["path"]), check=_ds_check, memory=True)


def job_real_files(p: dict) -> Job:
    """open_virtual_dataset of each file in ``p["files"]`` (the parent keeps those that both
    revisions open without an error)."""
    from virtualizarr import open_virtual_dataset

    def run() -> list:
        out = []
        for f in p["files"]:
            try:
                ds = open_virtual_dataset(f)
                out.append([Path(f).name, *_ds_check(ds)])
            except Exception as e:  # noqa: BLE001  (the parent drops files failing anywhere)
                out.append([Path(f).name, "error", f"{type(e).__name__}: {e}"[:200]])
        return out

    return Job(run, check=lambda r: r)


def job_parse_header(p: dict) -> Job:
    from virtualizarr.parsers.netcdf3 import parse_header

    data = Path(p["path"]).read_bytes()
    return Job(lambda: parse_header(data, p["path"]), inner=50, check=lambda h: len(h.variables))


def job_netcdf3_parser(p: dict) -> Job:
    from virtualizarr.parsers import NetCDF3Parser

    reg = _registry()
    return Job(lambda: NetCDF3Parser()(p["path"], reg), inner=10, check=_manifest_check)


def job_combine(p: dict) -> Job:
    import virtualizarr as vz

    return Job(
        lambda: vz.open_virtual_mfdataset(p["files"], parallel=p["parallel"], progress=False),
        check=_ds_check,
    )


class Combined:
    """The combined virtual dataset of ``files``, made once per worker and file list."""

    cache: ClassVar[dict[tuple[str, ...], Any]] = {}

    @classmethod
    def of(cls, files: list[str]) -> Any:
        import virtualizarr as vz

        key = tuple(files)
        if key not in cls.cache:
            cls.cache.clear()
            cls.cache[key] = vz.open_virtual_mfdataset(files, parallel=False, progress=False)
        return cls.cache[key]


def _chunk_keys(store: Any, var: str) -> list[str]:
    import numpy as np

    from virtualizarr.manifests.manifest import MISSING

    arr = store.group.arrays[var]
    enc = arr.metadata.chunk_key_encoding
    return [
        f"{var}/" + enc.encode_chunk_key(tuple(int(i) for i in idx))
        for idx in np.argwhere(arr.manifest.path_ids != MISSING)
    ]


def _nbytes(results: list) -> int:
    return sum(len(b) for b in results if b is not None)


def job_store(p: dict) -> Job:
    """Every chunk of ``t2m`` of the combined files through one route of ManifestStore."""
    import zarr
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.common import concurrent_map
    from zarr.core.sync import sync

    ds = Combined.of(p["files"])
    store = ds.vz.to_store()
    keys = _chunk_keys(store, "t2m")
    proto = default_buffer_prototype()
    route = p["route"]

    def open_array(pipeline: str | None) -> Any:
        if pipeline is None:
            return zarr.open_group(store, mode="r", zarr_format=3)["t2m"]
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            return zarr.open_group(store, mode="r", zarr_format=3)["t2m"]

    def mean(a: Any) -> float:
        return round(float(a.mean(dtype="f8")), 4)

    if route == "get":

        async def gets() -> list:
            return await concurrent_map([(k,) for k in keys], lambda k: store.get(k, proto), 10)

        return Job(lambda: sync(gets()), check=_nbytes)
    if route == "get_partial_values":
        return Job(
            lambda: sync(store.get_partial_values(proto, [(k, None) for k in keys])),
            check=_nbytes,
        )
    if route == "get_sync":
        return Job(lambda: [store.get_sync(k, prototype=proto) for k in keys], check=_nbytes)
    if route == "default":
        arr = open_array(None)
        return Job(lambda: arr[...], check=mean)
    if route == "fused":
        arr = open_array("zarr.core.codec_pipeline.FusedCodecPipeline")
        return Job(lambda: arr[...], check=mean)
    if route == "open_data":
        return Job(lambda: ds.vz.open_data()["t2m"].values, check=mean)
    if route == "open_data_dask":
        return Job(
            lambda: float(ds.vz.open_data(chunks={})["t2m"].mean(dtype="f8").compute()),
            check=lambda v: round(v, 4),
        )
    raise ValueError(route)


def job_read_elsewhere(p: dict) -> Job:
    """A mean of ``t2m`` read from what we wrote: an Icechunk repository, or kerchunk JSON
    through fsspec ``reference://`` (third-party readers of our output)."""
    import xarray as xr

    ds = Combined.of(p["files"])
    work = Path(tempfile.mkdtemp(prefix="vz_cmp_"))
    if p["via"] == "icechunk":
        try:
            from virtualizarr.readers import open_icechunk
        except ImportError:
            from virtualizarr.writers.icechunk import open_icechunk  # 8b118c4

        ds.vz.to_icechunk(str(work / "repo"))

        def run() -> float:
            return float(open_icechunk(str(work / "repo"), chunks=None)["t2m"].mean(dtype="f8"))
    else:
        ds.vz.to_kerchunk(work / "refs.json", format="json")

        def run() -> float:
            d = xr.open_dataset(
                "reference://",
                engine="zarr",
                chunks=None,
                backend_kwargs={
                    "consolidated": False,
                    "storage_options": {"fo": str(work / "refs.json")},
                },
            )
            return float(d["t2m"].mean(dtype="f8"))

    return Job(
        run,
        check=lambda v: round(v, 4),
        cleanup=[lambda: shutil.rmtree(work, ignore_errors=True)],
    )


def kerchunk_dataset() -> Any:
    """140,160 references: ``air`` (8760, 512, 512) f4 in (1, 128, 128) chunks, zlib +
    shuffle, 365 daily files, and a loaded ``time`` coordinate (as kerchunk_write.py)."""
    import numpy as np
    import xarray as xr

    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.manifests.metadata import create_v3_array_metadata

    grid = (365 * 24, 4, 4)
    files = [f"s3://bucket/era/air_{d:03d}.nc" for d in range(365)]
    ids = np.broadcast_to((np.arange(grid[0]) // 24).astype(np.uint32)[:, None, None], grid)
    lengths = np.random.default_rng(0).integers(20_000, 60_000, size=grid, dtype=np.uint64)
    per_file = lengths.reshape(365, -1)
    offsets = (4096 + np.cumsum(per_file, axis=1) - per_file).reshape(grid).astype(np.uint64)
    manifest = ChunkManifest.from_path_ids(table=files, ids=ids, offsets=offsets, lengths=lengths)
    meta = create_v3_array_metadata(
        shape=(grid[0], 512, 512),
        data_type=np.dtype("<f4"),
        chunk_shape=(1, 128, 128),
        fill_value=np.nan,
        codecs=[
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
            {"name": "numcodecs.zlib", "configuration": {"level": 4}},
        ],
        attributes={"units": "K", "_FillValue": np.nan},
        dimension_names=("time", "y", "x"),
    )
    air = xr.Variable(("time", "y", "x"), ManifestArray(meta, manifest), {"units": "K"})
    t = xr.Variable("time", np.arange(grid[0], dtype="f8"), {"units": "hours since 2020-01-01"})
    return xr.Dataset({"air": air}, coords={"time": t})


def job_kerchunk(p: dict) -> Job:
    ds = kerchunk_dataset()
    work = Path(tempfile.mkdtemp(prefix="vz_cmp_"))
    clean = [lambda: shutil.rmtree(work, ignore_errors=True)]
    what = p["what"]
    if what == "dict":
        return Job(lambda: ds.vz.to_kerchunk(format="dict"), check=lambda r: len(r["refs"]))
    if what in ("json", "parquet"):
        out = work / f"a.{what}"

        def prep() -> None:
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(True)

        return Job(
            lambda: ds.vz.to_kerchunk(out, format=what),
            prepare=prep,
            check=lambda _: out.exists(),
            cleanup=clean,
        )
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser

    fmt = "json" if what == "read_json" else "parquet"
    ds.vz.to_kerchunk(work / f"a.{fmt}", format=fmt)
    parser = KerchunkJSONParser() if fmt == "json" else KerchunkParquetParser()
    reg = _registry()
    return Job(lambda: parser(str(work / f"a.{fmt}"), reg), check=_manifest_check, cleanup=clean)


def job_icechunk(p: dict) -> Job:
    """to_icechunk of 1,000,000 references (1,000 files that need not exist) + commit."""
    import icechunk

    from virtualizarr.writers.icechunk import to_icechunk

    sys.path.insert(0, str(HERE))  # icechunk_write.py builds the same dataset through the API
    from icechunk_write import virtual_dataset

    ds = virtual_dataset(1_000_000, n_files=1000)
    state: dict[str, Any] = {}

    def prep() -> None:
        if "tmp" in state:
            shutil.rmtree(state["tmp"], ignore_errors=True)
        state["tmp"] = tempfile.mkdtemp(prefix="vz_cmp_ic_")
        cfg = icechunk.RepositoryConfig.default()
        cfg.set_virtual_chunk_container(
            icechunk.VirtualChunkContainer("s3://bucket/", icechunk.s3_store(region="us-east-1"))
        )
        repo = icechunk.Repository.create(
            icechunk.local_filesystem_storage(state["tmp"]), config=cfg
        )
        state["session"] = repo.writable_session("main")

    def run() -> str:
        to_icechunk(ds, state["session"].store)
        return state["session"].commit("bench")

    return Job(
        run,
        prepare=prep,
        check=lambda _: None,
        cleanup=[lambda: shutil.rmtree(state.get("tmp", ""), ignore_errors=True)],
    )


def job_manifest(p: dict) -> Job:
    """One way of building a 100 files x 10,000 chunks manifest (as manifest_memory.py)."""
    import numpy as np

    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.manifests.manifest import concatenate_manifests
    from virtualizarr.manifests.metadata import create_v3_array_metadata

    n_files, per_file = 100, 10_000
    grid = (n_files, per_file)
    files = [f"s3://bucket/archive/year=2024/file_{i:05d}.nc" for i in range(n_files)]
    offsets = np.tile(np.arange(per_file, dtype=np.uint64) * 65_536 + 4_096, n_files).reshape(grid)
    lengths = np.full(grid, 65_536, dtype=np.uint64)
    how = p["how"]
    if how == "from_path_ids":
        ids = np.repeat(np.arange(n_files, dtype=np.uint32), per_file).reshape(grid)
        fn = lambda: ChunkManifest.from_path_ids(
            table=files, ids=ids, offsets=offsets, lengths=lengths
        )
    elif how in ("from_arrays_U", "from_arrays_StringDType"):
        paths = np.repeat(np.array(files), per_file).reshape(grid)
        if how.endswith("StringDType"):
            paths = paths.astype(np.dtypes.StringDType())
        fn = lambda: ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    else:
        parts = [
            ChunkManifest.from_arrays(paths=f, offsets=offsets[i], lengths=lengths[i])
            for i, f in enumerate(files)
        ]
        if how == "concatenate_manifests":
            fn = lambda: concatenate_manifests(parts, axis=0)
        else:
            meta = create_v3_array_metadata(
                shape=(per_file * 10,), data_type="<f4", chunk_shape=(10,), dimension_names=["x"]
            )
            arrays = [ManifestArray(meta, m) for m in parts]
            fn = lambda: np.concatenate(arrays).manifest
    return Job(
        fn,
        check=lambda m: [len(m), int(m.offsets.sum())],
        memory=True,
        per_ref=n_files * per_file,
    )


JOBS: dict[str, Callable[[dict], Job]] = {
    f.__name__.removeprefix("job_"): f
    for f in (
        job_hdf5_parser,
        job_open_virtual_dataset,
        job_real_files,
        job_parse_header,
        job_netcdf3_parser,
        job_combine,
        job_store,
        job_read_elsewhere,
        job_kerchunk,
        job_icechunk,
        job_manifest,
    )
}


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of every process it started: those it
    reaped (RUSAGE_CHILDREN), living descendants (their own time plus that of the children
    they reaped: a fork server's pool workers). Each process is counted once at any time."""
    total = time.process_time()
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += r.ru_utime + r.ru_stime
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _timed(job: Job) -> tuple[float, float, Any]:
    wall = cpu = 0.0
    result = None
    gc.collect()  # once: a full collection costs more than some calls
    for _ in range(job.inner):
        if job.prepare:
            job.prepare()
        result = None
        c0, t0 = _cpu(), time.perf_counter()
        result = job.run()
        wall += time.perf_counter() - t0
        cpu += _cpu() - c0
    return wall / job.inner, cpu / job.inner, result


def _memory(job: Job) -> dict:
    import tracemalloc

    if job.prepare:
        job.prepare()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = job.run()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = {"retained_mb": (current - before) / 2**20, "peak_mb": (peak - before) / 2**20}
    if job.per_ref:
        out["retained_b_per_ref"] = (current - before) / job.per_ref
        out["nbytes_per_ref"] = getattr(result, "nbytes", 0) / job.per_ref
    del result
    return out


def _profile(job: Job, top: int) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    for _ in range(max(job.inner, 3)):
        if job.prepare:
            job.prepare()
        prof.enable()
        job.run()
        prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def worker() -> None:
    """Answer JSON-line requests on stdin; stdout is kept for answers only."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    import virtualizarr

    jobs: dict[str, Job] = {}
    out.write(json.dumps({"virtualizarr": virtualizarr.__file__}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        op, key = req["op"], req.get("key")
        try:
            if op == "quit":
                break
            if op == "setup":
                job = JOBS[req["kind"]](req["params"])
                wall, _, result = _timed(Job(job.run, job.prepare, 1))  # warm-up
                # short calls are repeated so that a sample lasts ~0.3 s: less timer noise
                job.inner = max(job.inner, min(50, int(0.3 / max(wall, 1e-6))))
                jobs[key] = job
                answer: dict = {"check": job.check(result)}
            elif op == "run":
                wall, cpu, result = _timed(jobs[key])
                answer = {"wall": wall, "cpu": cpu}
            elif op == "memory":
                answer = _memory(jobs[key])
            elif op == "profile":
                answer = {"text": _profile(jobs[key], req.get("top", 25))}
            elif op == "teardown":
                job = jobs.pop(key, None)
                for fn in job.cleanup if job else []:
                    fn()
                Combined.cache.clear() if req.get("drop_combined") else None
                gc.collect()
                answer = {}
            else:
                raise ValueError(op)
            answer["ok"] = True
        except Exception as e:  # noqa: BLE001  (reported to the parent, which goes on)
            import traceback

            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
        out.write(json.dumps(answer, default=str) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# parent side


@dataclass
class Workload:
    name: str
    kind: str
    params: dict
    group: str


def workloads(args: argparse.Namespace) -> list[Workload]:
    """Every workload, with the files it needs made first (the same files for both)."""
    sys.path.insert(0, str(HERE))
    from combine_and_read import make_files
    from hdf5_virtualize import FULL_STEPS, SMALL_STEPS, make_file

    bench = Path(tempfile.gettempdir()) / "vz_bench_combine"
    many = [str(p) for p in make_files(bench / f"n{args.n_files}", args.n_files)]
    few = [str(p) for p in make_files(bench / f"n{args.read_files}", args.read_files)]
    small, full = str(make_file(SMALL_STEPS)), str(make_file(FULL_STEPS))
    header = REAL / "netcdf3" / "ref_nccopy3_subset.nc"
    out = [
        Workload("hdf5 HDFParser 14k chunks", "hdf5_parser", {"path": small}, "hdf5"),
        Workload("hdf5 HDFParser 140k chunks", "hdf5_parser", {"path": full}, "hdf5"),
        Workload("hdf5 open_virtual_dataset 140k", "open_virtual_dataset", {"path": full}, "hdf5"),
    ]
    for fmt in ("netcdf4_hdf5", "netcdf3"):
        files = sorted(
            str(p) for p in (REAL / fmt).glob("*") if p.suffix in (".nc", ".h5", ".hdf5")
        )
        if files:
            out.append(
                Workload(f"real {fmt}: ovd each file", "real_files", {"files": files}, "real")
            )
    if header.exists():
        out += [
            Workload("netcdf3 parse_header 367 vars", "parse_header", {"path": str(header)}, "netcdf3"),
            Workload("netcdf3 NetCDF3Parser 367 vars", "netcdf3_parser", {"path": str(header)}, "netcdf3"),
        ]  # fmt: skip
    for par in (False, "threads", "processes"):
        out.append(
            Workload(
                f"combine {args.n_files} files {par or 'serial'}",
                "combine",
                {"files": many, "parallel": par},
                "combine",
            )
        )
    n = args.read_files
    for route, label in [
        ("get", "get async x10"),
        ("get_partial_values", "get_partial_values"),
        ("get_sync", "get_sync"),
        ("default", "zarr default pipeline"),
        ("fused", "zarr FusedCodecPipeline"),
        ("open_data", "ds.vz.open_data()"),
        ("open_data_dask", "open_data(chunks={}) dask"),
    ]:
        out.append(
            Workload(f"store {n} files: {label}", "store", {"files": few, "route": route}, "store")
        )
    for via in ("icechunk", "fsspec"):
        out.append(
            Workload(
                f"mean {n} files via {via}", "read_elsewhere", {"files": few, "via": via}, "store"
            )
        )
    for what in ("dict", "json", "parquet", "read_json", "read_parquet"):
        out.append(Workload(f"kerchunk 140k {what}", "kerchunk", {"what": what}, "kerchunk"))
    out.append(Workload("icechunk 1M refs write+commit", "icechunk", {}, "icechunk"))
    for how in (
        "from_path_ids",
        "from_arrays_U",
        "from_arrays_StringDType",
        "concatenate_manifests",
        "np_concatenate_arrays",
    ):
        out.append(Workload(f"manifest 1M {how}", "manifest", {"how": how}, "manifest"))
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        out = [w for w in out if any(k in w.name or k == w.group for k in keys)]
    return out


class Worker:
    def __init__(self, label: str, src: Path, log: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
        self.label = label
        self.log = open(log, "w")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        hello = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        self.module = hello["virtualizarr"]
        if not self.module.startswith(str(src)):
            raise RuntimeError(f"{label}: virtualizarr imported from {self.module}, not {src}")

    def ask(self, **req: Any) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.label} worker died; see {self.log.name}")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, BrokenPipeError):
            self.ask(op="quit")
        self.proc.wait(timeout=60)
        self.log.close()


def checkout(spec: str, tmp: Path, made: list[Path]) -> Path:
    """The ``src`` folder of a checkout path, or of a git revision checked out for this run."""
    path = Path(spec)
    if path.is_dir():
        return path / "src" if (path / "src" / "virtualizarr").is_dir() else path
    dest = tmp / f"rev-{spec.replace('/', '_')}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(dest), spec],
        check=True,
        capture_output=True,
    )
    made.append(dest)
    return dest / "src"


@dataclass
class Row:
    name: str
    old: list[tuple[float, float]] = field(default_factory=list)
    new: list[tuple[float, float]] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    note: str = ""
    memory: dict[str, dict] = field(default_factory=dict)

    def med(self, which: str, i: int) -> float:
        return statistics.median(s[i] for s in getattr(self, which))

    def best(self, which: str, i: int) -> float:
        return min(s[i] for s in getattr(self, which))

    def verdict(self) -> str:
        """ok: new CPU within TOLERANCE of old by median and by best call; SLOWER: above by
        both and at least 75% of (old, new) sample pairs have new > old; else noise."""
        if not self.old or not self.new:
            return "n/a"
        by_median = self.med("new", 1) / self.med("old", 1)
        by_best = self.best("new", 1) / self.best("old", 1)
        if by_median <= TOLERANCE and by_best <= TOLERANCE:
            return "ok"
        pairs = [(o[1], n[1]) for o in self.old for n in self.new]
        above = sum(n > o for o, n in pairs) / len(pairs)
        if by_median > TOLERANCE and by_best > TOLERANCE and above >= 0.75:
            return "SLOWER"
        return "noise"


def compare(w: Workload, old: Worker, new: Worker, rounds: int, profile: bool) -> Row:
    row = Row(w.name)
    params = w.params
    answers = {}
    for wk in (old, new):
        answers[wk.label] = wk.ask(op="setup", key=w.name, kind=w.kind, params=params)
    if w.kind == "real_files":  # only the files both revisions open
        bad = {
            r[0]
            for a in answers.values()
            if a["ok"]
            for r in a["check"]
            if len(r) > 1 and r[1] == "error"
        }
        if bad:
            keep = [f for f in params["files"] if Path(f).name not in bad]
            row.note = f"{len(keep)} of {len(params['files'])} files"
            for label, a in answers.items():
                for r in a["check"] if a["ok"] else []:
                    if len(r) > 1 and r[1] == "error":
                        print(f"  {w.name}: dropped {r[0]}, fails on {label}: {r[2]}")
            params = dict(params, files=keep)
            for wk in (old, new):
                wk.ask(op="teardown", key=w.name)
                answers[wk.label] = wk.ask(op="setup", key=w.name, kind=w.kind, params=params)
    failed = [f"{k}: {a['error']}" for k, a in answers.items() if not a["ok"]]
    if failed:
        row.note = "; ".join(failed)
    else:
        checks = [a["check"] for a in answers.values()]
        if checks[0] != checks[1]:
            row.note = (row.note + "; " if row.note else "") + "out differs"
            print(f"  {w.name}: results differ\n    old {checks[0]}\n    new {checks[1]}"[:2000])
        for _ in range(rounds):
            for wk, dest in ((old, row.old), (new, row.new)):
                a = wk.ask(op="run", key=w.name)
                if not a["ok"]:
                    raise RuntimeError(f"{w.name} on {wk.label}: {a['error']}")
                dest.append((a["wall"], a["cpu"]))
                row.load.append(os.getloadavg()[0])
        if w.kind in ("manifest", "hdf5_parser", "open_virtual_dataset"):
            for wk in (old, new):
                row.memory[wk.label] = wk.ask(op="memory", key=w.name)
        if profile:
            for wk in (old, new):
                a = wk.ask(op="profile", key=w.name)
                print(f"\n===== profile {wk.label}: {w.name} =====\n{a.get('text', a)}")
    for wk in (old, new):
        wk.ask(op="teardown", key=w.name, drop_combined=w.group != "store")
    return row


def table(rows: list[Row]) -> str:
    head = (
        f"{'workload':<38} {'old s':>7} {'(CPU)':>7} {'new s':>7} {'(CPU)':>7} "
        f"{'wall x':>6} {'CPU x':>6} {'best x':>6} {'load':>5}  verdict"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.old or not r.new:
            lines.append(f"{r.name:<38} {'':>58}  n/a  {r.note}")
            continue
        ow, oc, nw, nc = r.med("old", 0), r.med("old", 1), r.med("new", 0), r.med("new", 1)
        lines.append(
            f"{r.name:<38} {ow:7.3f} {oc:7.3f} {nw:7.3f} {nc:7.3f} {nw / ow:6.2f} "
            f"{nc / oc:6.2f} {r.best('new', 1) / r.best('old', 1):6.2f} "
            f"{statistics.mean(r.load):5.1f}  {r.verdict()}" + (f"  ({r.note})" if r.note else "")
        )
    mem = [r for r in rows if r.memory]
    if mem:
        lines += [
            "",
            (
                f"{'memory (tracemalloc, one call)':<38} {'old peak MB':>11} {'new peak MB':>11} "
                f"{'old kept':>9} {'new kept':>9}  (kept: MB, or B/ref for manifests)"
            ),
        ]
        for r in mem:
            o, n = r.memory.get("old", {}), r.memory.get("new", {})
            kept = "retained_b_per_ref" if "retained_b_per_ref" in o else "retained_mb"
            lines.append(
                f"{r.name:<38} {o.get('peak_mb', float('nan')):11.1f} "
                f"{n.get('peak_mb', float('nan')):11.1f} {o.get(kept, float('nan')):9.2f} "
                f"{n.get(kept, float('nan')):9.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--old", default="8b118c4", help="checkout folder or git revision")
    ap.add_argument("--new", default=str(REPO), help="checkout folder or git revision")
    ap.add_argument("--rounds", type=int, default=5, help="timed calls per revision")
    ap.add_argument("--only", default="", help="comma-separated groups or name substrings")
    ap.add_argument("--n-files", type=int, default=100, help="files combined")
    ap.add_argument("--read-files", type=int, default=20, help="files read through the store")
    ap.add_argument("--profile", action="store_true", help="cProfile each workload in both")
    ap.add_argument("--json", help="also write the raw samples to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    tmp = Path(tempfile.mkdtemp(prefix="vz_compare_"))
    made: list[Path] = []
    workers: list[Worker] = []
    try:
        old_src, new_src = checkout(args.old, tmp, made), checkout(args.new, tmp, made)
        todo = workloads(args)
        load0 = os.getloadavg()
        logs = Path(tempfile.gettempdir())
        old = Worker("old", old_src, logs / "vz_compare_old.log")
        workers.append(old)
        new = Worker("new", new_src, logs / "vz_compare_new.log")
        workers.append(new)
        print(f"old: {old.module}\nnew: {new.module}")
        print(f"{len(todo)} workloads, {args.rounds} alternating rounds; load {load0}")
        rows = []
        for w in todo:
            t0 = time.perf_counter()
            rows.append(compare(w, old, new, args.rounds, args.profile))
            print(
                f"  {w.name}: {rows[-1].verdict()} ({time.perf_counter() - t0:.0f} s)", flush=True
            )
        print(f"\nload average at start {load0}, at end {os.getloadavg()}; {os.cpu_count()} CPUs")
        print(f"median of {args.rounds} alternating calls per revision; seconds per call\n")
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    finally:
        for wk in workers:
            wk.close()
        for dest in made:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(dest)],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
