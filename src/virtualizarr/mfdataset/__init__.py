"""open_virtual_mfdataset: parse many files in parallel and combine them once.

Per file, only a compact part is kept: the manifests of its virtual variables, the stored
(not yet CF-decoded) values of its loaded variables, and its attributes; metadata and
attributes repeated from file to file are shared, and a loaded variable whose values equal
the first file's (``lat``, ``lon``) is not kept again. No per-file ``xr.Dataset`` is built:
when the files combine along one dimension (the usual case, and every default option),
the parts are combined column by column with numpy (one CF decode of the concatenated
coordinate, one manifest grid per variable) and the xarray objects are built once, for the
result. Anything else (``preprocess=``, several concatenation dimensions, variables that
differ between files, non-default ``compat``/``data_vars``/``coords``...) builds a Dataset per
file and combines with xarray, as ``xr.open_mfdataset`` does. Either way the result is the
one ``xr.open_mfdataset`` gives for the same files and options.

Files are parsed in batches (many files per task), so the client does no scheduler work
per file. Each worker collects its batch into a :class:`Collector` (stacked grids, the
batch's path table, each distinct metadata once) and the client merges batches with a few
numpy operations each. With ``parallel="processes"`` the process pool is kept for the
session and forked when that is safe, so workers start at once with the client's imports;
the client parses batches itself only until the first one comes back (a fork server's
start-up), then waits, leaving the cores to the workers.

Modules, in the order a file goes through them: ``paths`` (globs, nested lists),
``parts`` (one file -> :class:`FilePart`), ``batches`` (a worker's task, retries,
failures), ``executors`` (serial, threads, the kept process pool, Executors, dask
clients), ``collector`` (compact columns, merging batches), ``combine`` (column-wise
combine, CF checks) and ``api`` (:func:`open_virtual_mfdataset`).
"""

from __future__ import annotations

from virtualizarr.mfdataset.api import OnError, open_virtual_mfdataset
from virtualizarr.mfdataset.batches import Failure, virtualize_batch
from virtualizarr.mfdataset.collector import Collector
from virtualizarr.mfdataset.combine import check_cf_compatible, fast_combine
from virtualizarr.mfdataset.executors import REMOTE_THREADS, ParallelOption, shutdown_pool
from virtualizarr.mfdataset.parts import FilePart, virtualize_part
from virtualizarr.mfdataset.paths import expand_paths

__all__ = [
    "REMOTE_THREADS",
    "Collector",
    "Failure",
    "FilePart",
    "OnError",
    "ParallelOption",
    "check_cf_compatible",
    "expand_paths",
    "fast_combine",
    "open_virtual_mfdataset",
    "shutdown_pool",
    "virtualize_batch",
    "virtualize_part",
]
