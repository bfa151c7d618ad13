"""Command line front end: ``virtualizarr info|kerchunk|icechunk|verify|demo``. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["main"]


def _open(args: argparse.Namespace) -> xr.Dataset:
    import virtualizarr as vz

    if len(args.files) == 1 and not any(c in args.files[0] for c in "*?["):
        return vz.open_virtual_dataset(args.files[0], group=args.group)
    return vz.open_virtual_mfdataset(
        args.files if len(args.files) > 1 else args.files[0],
        combine="nested" if args.concat_dim else "by_coords",
        concat_dim=args.concat_dim,
        parallel=args.parallel or False,
        group=args.group,
    )


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtualizarr", description="Virtual Zarr stores over archival files."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add_inputs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("files", nargs="+", help="files, URLs or a glob")
        sp.add_argument("--group", default=None, help="group to open, e.g. /a/b")
        sp.add_argument(
            "--concat-dim", default=None, help="combine in the given order along this dimension"
        )
        sp.add_argument("--parallel", choices=["threads", "processes", "dask"], default=None)

    info = sub.add_parser("info", help="print the virtual dataset")
    add_inputs(info)
    info.add_argument(
        "--stats",
        action="store_true",
        help="also print the requests and bytes fetched to virtualize the files, and the time",
    )
    kc = sub.add_parser("kerchunk", help="write kerchunk references")
    add_inputs(kc)
    kc.add_argument("-o", "--output", required=True)
    kc.add_argument("--format", choices=["json", "parquet"], default="json")
    ic = sub.add_parser("icechunk", help="write (and commit) an Icechunk repository")
    add_inputs(ic)
    ic.add_argument("-o", "--output", required=True, help="repository path or URL")
    vf = sub.add_parser(
        "verify",
        help="check that references point at existing, unchanged, decodable bytes",
        description="Exit status: 0 all good, 1 problems found (one line each on stderr), "
        "2 the references could not be opened or the arguments are wrong.",
    )
    vf.add_argument("refs", help="kerchunk references: a JSON file or a parquet directory")
    vf.add_argument("--sample", type=int, default=None, help="decode N random chunks, not all")
    vf.add_argument(
        "--against-source",
        action="store_true",
        help="also compare decoded values with each source read by its own reader",
    )
    demo = sub.add_parser("demo", help="run the end-to-end demo")
    demo.add_argument("folder", nargs="?", default="demo_output")
    return p


def _progress_bar(total: int) -> Iterator[None]:
    from tqdm import tqdm

    with tqdm(total=total, unit="chunk", file=sys.stderr, leave=False) as bar:
        while True:
            bar.update(1)
            yield


def _verify(args: argparse.Namespace) -> int:
    from virtualizarr.errors import VirtualiZarrError
    from virtualizarr.verify import verify

    progress = None
    if sys.stderr.isatty():
        try:
            import tqdm  # noqa: F401

            progress = _progress_bar
        except ImportError:
            pass
    try:
        report = verify(
            args.refs, sample=args.sample, against_source=args.against_source, progress=progress
        )
    except (VirtualiZarrError, OSError, ValueError, TypeError) as e:
        print(f"virtualizarr verify: cannot check {args.refs}: {e}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem, file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{'OK' if report.ok else 'PROBLEMS'}: {len(report.problems)} problem(s); "
        f"{report.sources} source file(s), {report.chunks_decoded} chunk(s) decoded, "
        f"{report.values_compared} variable(s) compared with the source"
    )
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``virtualizarr`` command."""
    args = _build_parser().parse_args(argv)
    if args.command == "verify":
        return _verify(args)
    if args.command == "demo":
        from virtualizarr.demo import main as demo_main

        return demo_main([args.folder])
    import time

    import virtualizarr  # noqa: F401  (imported before the clock starts)
    from virtualizarr.io import total_stats

    before, t0 = total_stats(), time.perf_counter()
    ds = _open(args)
    fetched, seconds = total_stats() - before, time.perf_counter() - t0
    if args.command == "info":
        print(ds)
        print(f"\n{ds.vz.nrefs()} chunk references, {ds.vz.nbytes} bytes in memory")
        if args.stats:
            # requests: object-store GETs/HEADs (local files: pread calls)
            print(
                f"virtualized in {seconds:.3f} s with {fetched.requests} requests, "
                f"{fetched.bytes} bytes fetched"
            )
    elif args.command == "kerchunk":
        ds.vz.to_kerchunk(args.output, format=args.format)
        print(f"wrote {args.output}")
    elif args.command == "icechunk":
        snapshot = ds.vz.to_icechunk(args.output)
        print(f"committed {snapshot} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
