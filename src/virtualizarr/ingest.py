"""Ingest many files into an Icechunk repository in committed batches, resumable.

``ingest_icechunk(paths, repo, append_dim="time", batch_size=1000)`` virtualizes the files
``batch_size`` at a time (``open_virtual_mfdataset``), writes each batch (the first one
creates the group, the others append along ``append_dim``) and commits it. Every commit
records the files it ingested in its snapshot metadata (``"virtualizarr_ingest"``), so the
repository itself is the log: a rerun after an interruption (a crash, a bad file with
``on_error="raise"``, a killed job) reads the branch's ancestry, leaves out the files
already committed and continues from the last commit. Nothing half-written ever reaches the
branch: a batch that fails is discarded with its session.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from virtualizarr.manifests.manifest import normalize_path

if TYPE_CHECKING:
    from datetime import datetime

    from icechunk import Repository

    from virtualizarr.mfdataset import OnError
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["IngestReport", "ingest_icechunk", "ingested_files"]

METADATA_KEY = "virtualizarr_ingest"
"""Snapshot-metadata key under which each batch commit lists its files."""


@dataclass
class IngestReport:
    """What one ``ingest_icechunk`` call did."""

    snapshots: list[str] = field(default_factory=list)
    """Snapshot ids of the commits made by this call, one per batch."""
    ingested: int = 0
    """Files committed by this call."""
    already: int = 0
    """Files left out because an earlier commit on the branch holds them (resumed)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Files that could not be virtualized (``on_error="warn"/"skip"``): path -> error."""


def ingested_files(repo: Repository, branch: str = "main") -> set[str]:
    """URLs of the files that earlier ``ingest_icechunk`` commits on ``branch`` hold.

    >>> # ingested_files(icechunk.Repository.open(storage))
    """
    import icechunk

    done: set[str] = set()
    try:
        ancestry = list(repo.ancestry(branch=branch))
    except icechunk.RefNotFoundError:
        return done
    for snap in ancestry:
        info = (snap.metadata or {}).get(METADATA_KEY)
        if isinstance(info, dict):
            done.update(info.get("files", ()))
            done.update(info.get("failed", ()))
    return done


def _open_repo(target: Any, urls: set[str]) -> tuple[Repository, bool]:
    import icechunk

    from virtualizarr.writers._icechunk_repo import repository_for_write

    if isinstance(target, icechunk.Repository):
        return target, False
    if isinstance(target, (str, os.PathLike)):
        return repository_for_write(str(os.fspath(target)), urls)
    raise TypeError(
        f"repo must be an icechunk Repository, a local path or an s3:// URL; got {type(target).__name__}"
    )


def ingest_icechunk(
    paths: str | os.PathLike[str] | Sequence[Any],
    repo: Any,
    *,
    append_dim: str,
    batch_size: int = 1000,
    branch: str = "main",
    group: str | None = None,
    registry: ObjectStoreRegistry | None = None,
    parser: Any = None,
    parallel: Any = None,
    on_error: OnError = "raise",
    retries: int = 2,
    progress: bool | None = None,
    validate_containers: bool = True,
    last_updated_at: datetime | None = None,
    **open_kwargs: Any,
) -> IngestReport:
    """Virtualize ``paths`` into ``repo`` ``batch_size`` files per commit; resumable.

    Parameters
    ----------
    paths
        Files in ``append_dim`` order (a glob is expanded and sorted): each batch is
        appended after the previous one.
    repo
        An ``icechunk.Repository``, or a local path / ``s3://`` URL (created if needed, with
        virtual chunk containers for the files).
    append_dim
        The dimension the batches are appended along (each batch is combined along it too).
    batch_size
        Files per commit. A rerun redoes at most one batch.
    parallel, on_error, retries, progress, registry, parser, open_kwargs
        As for :func:`virtualizarr.open_virtual_mfdataset`. Files that fail with
        ``on_error="warn"``/``"skip"`` are listed in the commit metadata and not retried by
        a resume (retrying them later would append them out of order).

    Returns
    -------
    IngestReport
        The snapshots made, and how many files were ingested, already there, or failed.

    Examples
    --------
    >>> # report = ingest_icechunk("data/*.nc", "era5.icechunk", append_dim="time")
    >>> # ... interrupted? run the same call again: it continues after the last commit.
    """
    from virtualizarr.mfdataset import expand_paths, open_virtual_mfdataset
    from virtualizarr.writers._icechunk_plan import get_doc, join
    from virtualizarr.writers.icechunk import to_icechunk

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    items = expand_paths(paths, registry)
    urls = [normalize_path(p) for p in items]
    report = IngestReport()
    repo_obj, new_containers = _open_repo(repo, set(urls))
    done = ingested_files(repo_obj, branch)
    todo = [(p, u) for p, u in zip(items, urls) if u not in done]
    report.already = len(items) - len(todo)
    prefix = (group or "").strip("/")
    for start in range(0, len(todo), int(batch_size)):
        chunk = todo[start : start + int(batch_size)]
        ds = open_virtual_mfdataset(
            [p for p, _ in chunk],
            registry,
            parser,
            parallel=parallel,
            on_error=on_error,
            retries=retries,
            progress=progress,
            **open_kwargs,
        )
        failed = dict(ds.encoding.get("failed", {}))
        session = repo_obj.writable_session(branch)
        exists = get_doc(session.store, join(prefix, "zarr.json")) is not None
        to_icechunk(
            ds,
            session.store,
            group=group,
            mode="a" if exists else "w-",
            append_dim=append_dim if exists else None,
            validate_containers=validate_containers,
            last_updated_at=last_updated_at,
        )
        failed_urls = {normalize_path(p) for p in failed}
        files = [u for _, u in chunk if u not in failed_urls]
        first, last = start + report.already, start + report.already + len(chunk) - 1
        snapshot = session.commit(
            f"virtualizarr: ingest files {first}..{last} of {len(items)} ({len(files)} files)",
            metadata={METADATA_KEY: {"files": files, "failed": sorted(failed_urls)}},
        )
        if new_containers:  # the containers the references need, saved once they exist
            repo_obj.save_config()
            new_containers = False
        report.snapshots.append(snapshot)
        report.ingested += len(files)
        report.failed.update(failed)
    return report
