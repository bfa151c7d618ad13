"""A worker's task: many files virtualized one after another into one Collector.

Errors that may be transient are retried; a file that still fails becomes a
:class:`Failure` of its batch instead of losing the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from virtualizarr.errors import VirtualiZarrError
from virtualizarr.mfdataset.collector import Collector
from virtualizarr.mfdataset.parts import virtualize_part
from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["Batch", "Failure", "Job", "virtualize_batch"]


@dataclass
class Failure:
    """A file that could not be virtualized (after retries)."""

    index: int
    source: str
    error: BaseException
    attempts: int


_DETERMINISTIC: tuple[type[BaseException], ...] = (
    VirtualiZarrError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    ValueError,
    TypeError,
    KeyError,
    NotImplementedError,
)


@dataclass
class Job:
    """What a worker needs to virtualize files (pickled once per batch)."""

    registry: ObjectStoreRegistry | None
    parser: Any
    options: dict[str, Any]
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None
    retries: int
    fail_fast: bool


@dataclass
class Batch:
    """The result of one task: its files collected into a :class:`Collector` (or, with
    ``preprocess=``, a Dataset per file), and its failures. ``done`` counts files tried."""

    start: int
    collector: Collector | None = None
    datasets: list[Any] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    done: int = 0


def _one(path: Any, job: Job, registry: ObjectStoreRegistry) -> Any:
    options = {k: v for k, v in job.options.items() if k != "decode_times"}
    part = virtualize_part(path, registry, job.parser, **options)
    if job.preprocess is None:
        return part
    return job.preprocess(part.to_dataset(job.options.get("decode_times")))


def virtualize_batch(paths: Sequence[Any], start: int, job: Job) -> Batch:
    """Virtualize ``paths`` (files ``start``, ``start + 1``... of the input) one after another.

    A file that fails is retried up to ``job.retries`` times unless its error is one that
    would repeat (a format error, a missing file); then it becomes a :class:`Failure`.
    """
    batch = Batch(start, collector=Collector() if job.preprocess is None else None)
    # without a registry, one for the batch: its default stores and resolved URLs are made
    # once, not once per file
    registry = job.registry if job.registry is not None else ObjectStoreRegistry()
    for i, path in enumerate(paths):
        attempt = 0
        batch.done += 1
        while True:
            attempt += 1
            try:
                result = _one(path, job, registry)
            except Exception as e:  # noqa: BLE001  (any error of one file is reported, not fatal)
                if attempt <= job.retries and not isinstance(e, _DETERMINISTIC):
                    continue
                batch.failures.append(Failure(start + i, str(path), e, attempt))
                if job.fail_fast:
                    return batch
                break
            if batch.collector is not None:
                batch.collector.add(result)
            else:
                batch.datasets.append(result)
            break
    return batch
