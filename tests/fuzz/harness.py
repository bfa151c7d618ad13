"""A fuzz harness shared by every format: seeded mutants of real files, each opened in a
child process with a time and memory limit, and each outcome classified.

Outcomes
--------
- ``ok``: the file opened (warnings such as ``VariableSkippedWarning`` are fine);
- ``named``: it raised an exception from :mod:`virtualizarr.errors` (or ``FileNotFoundError``
  / ``PermissionError``) whose message names the file;
- ``BAD``: anything else -- another exception type, a message without the file's name, a hang
  (``timeout`` seconds), a crash (the child died, e.g. SIGSEGV/SIGABRT), a ``MemoryError`` under
  ``RLIMIT_AS`` or a peak RSS above ``max_rss``, a reference past the end of the file, or a
  special case that did not raise what it must (a missing path must raise ``FileNotFoundError``).

Usage (in a test)::

    from tests.fuzz.harness import Runner, file_mutants, special_mutants, assert_no_bad

    data = path.read_bytes()
    cases = file_mutants(data, seed=1, n=fuzz_count(60), boundaries=[4, 32, 100],
                         fields=[Field(4, 4, ">")], magic=4)
    cases += special_mutants()
    with Runner(tmp_path) as run:   # one warm worker process, restarted after any BAD
        outcomes = run.many(path, cases, opener="open", parser="NetCDF3Parser")
    print(summarize(outcomes)); assert_no_bad(outcomes)

``opener`` names what the child does with each mutant: ``"parse"`` (the parser only),
``"open"`` (``open_virtual_dataset`` with the default loadable variables, then
``to_kerchunk(format="dict")`` and a check that every reference lies inside the file) or
``"read"`` (``"open"`` and then every variable's values through ``ds.vz.open_data()``).
``opener="module:function"`` calls ``function(path, **opener_kwargs)`` instead. Parser
options go in ``parser_kwargs`` (``run.many(src, cases, parser="HDFParser",
parser_kwargs={"engine": "h5py"})``).

Directory sources (Zarr stores, kerchunk parquet) use :func:`tree_mutants`: each mutant
changes (or deletes) one member file of a copy of the tree.

Run sizes: :func:`fuzz_count` gives the default small count for CI, or ``VIRTUALIZARR_FUZZ=N``
mutants per file for longer runs (tests may also be marked ``slow``). Everything is seeded:
the same ``(data, seed, n)`` gives the same mutants, and each outcome carries the mutant's name
(``bitflip@123.4``...) so a failure can be replayed with :meth:`Runner.one`.
``VIRTUALIZARR_FUZZ_KEEP=DIR`` keeps a copy of every BAD mutant in ``DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Field",
    "Mutant",
    "Outcome",
    "Runner",
    "assert_no_bad",
    "file_mutants",
    "fuzz_count",
    "special_mutants",
    "summarize",
    "tree_mutants",
]

GiB = 1 << 30
HUGE_VALUES = (
    0x7FFFFFFF,
    0xFFFFFFFF,
    0x80000000,
    0x7FFFFFFFFFFFFFFF,
    0xFFFFFFFFFFFFFFFF,
    0x40000000,
    0x7FFFFF,
    0xFFFFFF,
    0xFFFF,
    0xFF,
    0,
    1,
    10**9,
    10**18,
)


def fuzz_count(default: int) -> int:
    """Mutants per file: ``VIRTUALIZARR_FUZZ`` when set (longer runs), else ``default``."""
    env = os.environ.get("VIRTUALIZARR_FUZZ")
    return int(env) if env and env.isdigit() and int(env) > 0 else default


# -- mutants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """An integer field of a header, where huge counts/lengths/dimensions are written.

    ``size`` is 1, 2, 4 or 8 bytes; ``order`` ``">"`` (big-endian) or ``"<"``; ``text=True``
    for an ASCII number (FITS cards, JSON): the value is written as decimal digits, padded
    right with spaces to ``size`` characters.
    """

    offset: int
    size: int
    order: str = ">"
    text: bool = False
    name: str = ""


@dataclass(frozen=True)
class Mutant:
    """One bad input: ``data`` replaces the file (or, with ``member``, one file of a tree).

    ``kind`` is ``"bytes"``, or a special case: ``"directory"``, ``"unreadable"``, ``"missing"``,
    ``"delete"`` (removes ``member`` from a tree). ``expect`` lists the exception class names
    that are the only acceptable outcome (e.g. ``FileNotFoundError`` for a missing path).
    """

    name: str
    data: bytes | None = None
    kind: str = "bytes"
    member: str | None = None
    expect: tuple[str, ...] = ()


def _put_int(buf: bytearray, f: Field, value: int) -> None:
    if f.text:
        digits = str(value).encode()[: f.size]
        buf[f.offset : f.offset + f.size] = digits.ljust(f.size)
        return
    value &= (1 << (8 * f.size)) - 1
    buf[f.offset : f.offset + f.size] = value.to_bytes(
        f.size, "big" if f.order == ">" else "little"
    )


def file_mutants(
    data: bytes,
    *,
    seed: int,
    n: int,
    boundaries: Sequence[int] = (),
    fields: Sequence[Field] = (),
    magic: int = 4,
    header: int | None = None,
) -> list[Mutant]:
    """``n`` seeded mutants of ``data``: up to half at ``boundaries``/``fields``, the rest random.

    - truncations at every structure boundary in ``boundaries`` (and one byte either side) and
      at random points;
    - bit flips (1 to 8) inside the header (the first ``header`` bytes; default
      ``max(boundaries)`` or 4 KiB);
    - zeroed blocks (4 bytes to 4 KiB; a quarter of them anywhere in the file);
    - huge values (:data:`HUGE_VALUES`) in every ``fields`` entry, else at random aligned
      header positions as 4- and 8-byte big- and little-endian integers;
    - the right magic (first ``magic`` bytes) followed by garbage, and an empty file.

    >>> ms = file_mutants(b"CDF\\x01" + bytes(60), seed=0, n=20)
    >>> len(ms), ms[0].name
    (20, 'empty')
    """
    rng = random.Random(seed)
    size = len(data)
    hdr = header or min(size, max([*boundaries, 0]) or 4096)
    hdr = max(1, min(hdr, size))
    out: list[Mutant] = [
        Mutant("empty", b""),
        Mutant("magic+garbage", data[:magic] + rng.randbytes(max(size - magic, 0))),
        Mutant("magic-only", data[:magic]),
    ]
    cuts = sorted({c for b in boundaries for c in (b - 1, b, b + 1) if 0 < c < size})
    structured: list[Mutant] = [Mutant(f"truncate@{c}", data[:c]) for c in cuts]
    for f in fields:
        if f.offset + f.size > size:
            continue
        for v in HUGE_VALUES:
            buf = bytearray(data)
            _put_int(buf, f, v)
            label = f.name or f"{f.offset}:{f.size}{f.order}"
            structured.append(Mutant(f"huge[{label}]={v:#x}", bytes(buf)))
    rng.shuffle(structured)
    out += structured[: max(n // 2, 1)]  # the other half random, whatever the structure
    kinds = ["truncate", "bitflip", "bitflip", "zero", "huge"] if size else ["truncate"]
    while len(out) < n:
        kind = rng.choice(kinds)
        buf = bytearray(data)
        if kind == "truncate":
            c = rng.randrange(1, max(size, 2))
            out.append(Mutant(f"truncate@{c}", data[:c]))
        elif kind == "bitflip":
            flips = [(rng.randrange(hdr), rng.randrange(8)) for _ in range(rng.randint(1, 8))]
            for pos, bit in flips:
                buf[pos] ^= 1 << bit
            name = ",".join(f"{p}.{b}" for p, b in flips)
            out.append(Mutant(f"bitflip@{name}", bytes(buf)))
        elif kind == "zero":
            span = rng.choice([4, 16, 64, 512, 4096])
            area = size if rng.random() < 0.25 else hdr
            start = rng.randrange(max(area - 1, 1))
            buf[start : start + span] = bytes(len(buf[start : start + span]))
            out.append(Mutant(f"zero@{start}+{span}", bytes(buf)))
        else:
            width, order = rng.choice([(4, ">"), (8, ">"), (4, "<"), (8, "<"), (2, ">")])
            if hdr < width:
                continue
            f = Field(rng.randrange(0, hdr - width + 1) & ~(width - 1), width, order)
            v = rng.choice(HUGE_VALUES)
            _put_int(buf, f, v)
            out.append(Mutant(f"huge@{f.offset}:{width}{order}={v:#x}", bytes(buf)))
    return out[: max(n, 3)]


def tree_mutants(
    root: Path, members: Sequence[str], *, seed: int, n: int, magic: int = 1
) -> list[Mutant]:
    """``n`` seeded mutants of a directory tree: each changes or deletes one of ``members``.

    Text members (JSON) also get huge numbers written over their digits and truncations at
    every ``{``/``[``/``,`` boundary of the first 4 KiB.
    """
    rng = random.Random(seed)
    out: list[Mutant] = []
    per = max(1, n // max(len(members), 1))
    for member in members:
        data = (root / member).read_bytes()
        bounds = [i for i, c in enumerate(data[:4096]) if c in b"{[,:"]
        fields = []
        if data[:1] in (b"{", b"["):
            i = 0
            while i < min(len(data), 4096):  # every run of digits in the JSON
                if data[i : i + 1].isdigit():
                    j = i
                    while j < len(data) and data[j : j + 1].isdigit():
                        j += 1
                    fields.append(Field(i, j - i, text=True, name=f"{member}@{i}"))
                    i = j
                i += 1
            fields = rng.sample(fields, min(len(fields), 6))
            text_huge = [
                Mutant(
                    f"{member}:huge@{f.offset}={v}",
                    data[: f.offset] + str(v).encode() + data[f.offset + f.size :],
                    member=member,
                )
                for f in fields
                for v in (10**9, 10**18, -1, 10**400)
            ]
        else:
            text_huge = []
        sub = file_mutants(data, seed=rng.randrange(1 << 30), n=per, boundaries=bounds, magic=magic)
        sub = [Mutant(f"{member}:{m.name}", m.data, member=member) for m in sub]
        out += [Mutant(f"{member}:delete", None, kind="delete", member=member)]
        out += text_huge[: per // 3] + sub
    rng.shuffle(out)
    return out[: max(n, len(members))]


def special_mutants() -> list[Mutant]:
    """A directory in place of the file, an unreadable file, a path that does not exist."""
    return [
        Mutant("directory", kind="directory"),
        Mutant("unreadable", kind="unreadable", expect=("PermissionError",)),
        Mutant("missing", kind="missing", expect=("FileNotFoundError",)),
    ]


# -- outcomes ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one mutant did: ``status`` is ``ok``, ``named`` or ``BAD``."""

    mutant: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    peak_rss: int = 0

    def __str__(self) -> str:
        return f"{self.status:5} {self.mutant}: {self.detail} ({self.seconds:.2f} s)"


def summarize(outcomes: Iterable[Outcome], title: str = "") -> str:
    """A one-line count per status and one line per BAD outcome."""
    outcomes = list(outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "named", "BAD")}
    slow = max((o.seconds for o in outcomes), default=0.0)
    peak = max((o.peak_rss for o in outcomes), default=0) / (1 << 20)
    head = (
        f"{title}{len(outcomes)} cases: {counts['ok']} ok, {counts['named']} named, "
        f"{counts['BAD']} BAD (slowest {slow:.2f} s, peak RSS {peak:.0f} MiB)"
    )
    lines = [head]
    lines += [f"  {o}" for o in outcomes if o.status == "BAD"]
    return "\n".join(lines)


def assert_no_bad(outcomes: Iterable[Outcome], title: str = "") -> None:
    """Fail with :func:`summarize` when any outcome is BAD."""
    outcomes = list(outcomes)
    if any(o.status == "BAD" for o in outcomes):
        raise AssertionError(summarize(outcomes, title))


# -- the runner --------------------------------------------------------------------------------


class Runner:
    """Runs mutants in a warm child process with ``RLIMIT_AS = memory`` and a per-case
    ``timeout``; the child is replaced after any BAD outcome (and every ``recycle`` cases) so one
    case cannot poison the next.

    >>> # with Runner(tmp_path) as run: outcomes = run.many(src, cases, parser="NetCDF3Parser")
    """

    def __init__(
        self,
        workdir: Path,
        *,
        timeout: float = 30.0,
        memory: int = 4 * GiB,
        max_rss: int = 2 * GiB,
        recycle: int = 200,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout, self.memory, self.max_rss, self.recycle = timeout, memory, max_rss, recycle
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0
        self._counter = 0
        self._buf = b""

    def __enter__(self) -> Runner:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child process."""
        if self._proc is not None:
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            # fewer arenas and threads: the address-space limit should hit allocations, not
            # thread stacks and malloc arenas reserved up front
            env.update(
                MALLOC_ARENA_MAX="2",
                OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1",
                PYTHONFAULTHANDLER="",
            )
            env.pop("PYTHONFAULTHANDLER")
            self._proc = subprocess.Popen(
                [sys.executable, "-u", __file__, "--worker", str(self.memory)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=str(self.workdir),
            )
            self._buf = b""
            self._served = 0
            reply = self._readline(120.0)  # imports take a second or two
            if reply is None or json.loads(reply).get("ready") is not True:
                raise RuntimeError(f"fuzz worker did not start: {reply!r}")
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def _readline(self, timeout: float) -> bytes | None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def materialize(self, source: Path, mutant: Mutant) -> Path:
        """Write ``mutant`` of ``source`` (a file or a directory tree) under ``workdir``."""
        self._counter += 1
        source = Path(source)
        dest = self.workdir / f"m{self._counter:05d}" / source.name
        dest.parent.mkdir(parents=True)
        if mutant.kind == "missing":
            return dest
        if mutant.kind == "directory":
            dest.mkdir()
            (dest / "x").write_bytes(b"")
            return dest
        if source.is_dir():
            shutil.copytree(source, dest)
            for p in [dest, *dest.rglob("*")]:  # copies of read-only data stay writable
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
            target = dest / (mutant.member or "")
            if mutant.kind == "delete":
                target.unlink()
            elif mutant.data is not None:
                target.write_bytes(mutant.data)
        elif mutant.data is not None:
            dest.write_bytes(mutant.data)
        else:
            shutil.copyfile(source, dest)
        if mutant.kind == "unreadable":
            dest.chmod(0)
        return dest

    def one(
        self,
        source: Path,
        mutant: Mutant,
        *,
        opener: str = "open",
        parser: str | None = None,
        **opener_kwargs: Any,
    ) -> Outcome:
        """Materialize and run one mutant; see the module docstring for ``opener``."""
        path = self.materialize(source, mutant)
        if mutant.kind == "unreadable" and os.access(path, os.R_OK):
            # root reads a mode-000 file anyway: then it is simply the original file
            mutant = Mutant(mutant.name + "(readable-as-root)", kind="unreadable")
        request = {
            "path": str(path),
            "opener": opener,
            "parser": parser,
            "kwargs": opener_kwargs,
            "max_rss": self.max_rss,
        }
        proc = self._start()
        t0 = time.monotonic()
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        line = self._readline(self.timeout)
        seconds = time.monotonic() - t0
        if line is None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # EOF: let it be reaped
                proc.wait(timeout=2 if time.monotonic() - t0 < self.timeout else 0.01)
            if proc.poll() is None:
                self._kill()
                out = Outcome(mutant.name, "BAD", f"hang: no answer in {self.timeout:.0f} s")
            else:
                rc = proc.returncode
                why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
                self._proc = None
                out = Outcome(mutant.name, "BAD", f"crash: the process died ({why})")
            out.seconds = seconds
            self._cleanup(path, mutant, out)
            return out
        reply = json.loads(line)
        out = _classify(mutant, path, reply)
        out.seconds = seconds
        self._served += 1
        if out.status == "BAD" or self._served >= self.recycle:
            self._kill()
        self._cleanup(path, mutant, out)
        return out

    def many(
        self,
        source: Path,
        mutants: Iterable[Mutant],
        *,
        opener: str = "open",
        parser: str | None = None,
        **opener_kwargs: Any,
    ) -> list[Outcome]:
        """:meth:`one` for each mutant, in order."""
        return [self.one(source, m, opener=opener, parser=parser, **opener_kwargs) for m in mutants]

    def _cleanup(self, path: Path, mutant: Mutant, out: Outcome) -> None:
        keep = os.environ.get("VIRTUALIZARR_FUZZ_KEEP")
        if path.exists() and mutant.kind == "unreadable":
            path.chmod(0o600)
        if keep and out.status == "BAD" and path.exists():
            dest = Path(keep) / f"{path.parent.name}-{path.name}"
            if path.is_dir():
                shutil.copytree(path, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, dest)
            (Path(keep) / f"{path.parent.name}.txt").write_text(str(out) + "\n")
        shutil.rmtree(path.parent, ignore_errors=True)


_NAMED_BUILTINS = ("FileNotFoundError", "PermissionError")


def _classify(mutant: Mutant, path: Path, reply: dict[str, Any]) -> Outcome:
    peak = int(reply.get("peak_rss", 0))
    if reply.get("bad"):  # the worker found a problem itself (refs past EOF, memory)
        return Outcome(mutant.name, "BAD", reply["bad"], peak_rss=peak)
    exc = reply.get("exc")
    if exc is None:
        if mutant.expect:
            return Outcome(
                mutant.name, "BAD", f"opened, but must raise {'/'.join(mutant.expect)}", 0, peak
            )
        return Outcome(mutant.name, "ok", reply.get("note", ""), peak_rss=peak)
    name, message, named_class = exc["type"], exc["message"], exc["virtualizarr"]
    mro = set(exc.get("mro", [name]))  # a subclass of FileNotFoundError is one
    detail = f"{name}: {message[:300]}"
    if mutant.expect and not mro & set(mutant.expect):
        return Outcome(mutant.name, "BAD", f"expected {'/'.join(mutant.expect)}; got {detail}")
    if not (named_class or mro & set(_NAMED_BUILTINS)):
        return Outcome(mutant.name, "BAD", detail, peak_rss=peak)
    if str(path) not in message:
        return Outcome(mutant.name, "BAD", f"message does not name the file: {detail}")
    return Outcome(mutant.name, "named", detail, peak_rss=peak)


# -- the child process -------------------------------------------------------------------------


def _peak_rss_reset() -> None:
    try:  # Linux: "5" resets the peak RSS (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _check_refs(refs: dict[str, Any], path: str) -> str:
    """A problem with the references to ``path`` (past its end, negative), or ``""``."""
    size = os.path.getsize(path) if os.path.isfile(path) else None
    for key, value in refs.get("refs", {}).items():
        if not isinstance(value, list) or len(value) != 3:
            continue
        url, offset, length = value
        if not isinstance(url, str) or not url.endswith(os.path.basename(path)):
            continue
        if offset < 0 or length < 0:
            return f"reference {key} has offset {offset}, length {length}"
        if size is not None and offset + length > size:
            return f"reference {key} = [{offset}, {length}] ends past the file's {size} bytes"
    return ""


def _open(
    path: str,
    parser: str | None,
    read: bool = False,
    group: str | None = None,
    parser_kwargs: dict[str, Any] | None = None,
) -> str:
    import warnings

    import numpy as np

    from virtualizarr import open_virtual_dataset, parsers
    from virtualizarr.errors import VirtualiZarrError

    p = getattr(parsers, parser)(**(parser_kwargs or {})) if parser else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_virtual_dataset(path, parser=p, group=group)
        note = ""
        try:
            refs = ds.vz.to_kerchunk(format="dict")
        except VirtualiZarrError as e:  # a writer's limit (sharding...), not the parser's
            refs, note = {}, f", to_kerchunk refused: {type(e).__name__}"
        problem = _check_refs(refs, path)
        if problem:
            return "BAD:" + problem
        if read:
            loaded = ds.vz.open_data()
            for name in loaded.variables:
                np.asarray(loaded[name].values)
    return f"{len(ds.variables)} variables{note}"


def _parse_only(path: str, parser: str | None, parser_kwargs: dict[str, Any] | None = None) -> str:
    import warnings

    from virtualizarr import parsers
    from virtualizarr.parsers import detect_parser
    from virtualizarr.registry import ObjectStoreRegistry

    registry = ObjectStoreRegistry()
    url = "file://" + path if path.startswith("/") else path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = getattr(parsers, parser)(**(parser_kwargs or {})) if parser else None
        p = p or detect_parser(url, registry)
        store = p(url, registry)
    return f"{len(list(store.group.walk()))} nodes"


def _resolve(opener: str) -> Any:
    if opener == "open":
        return _open
    if opener == "read":
        return lambda path, parser=None, **kw: _open(path, parser, read=True, **kw)
    if opener == "parse":
        return _parse_only
    import importlib

    module, _, func = opener.partition(":")
    return getattr(importlib.import_module(module), func)


def _worker(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import virtualizarr
    import virtualizarr.writers.kerchunk  # noqa: F401
    from virtualizarr import errors

    for mod in ("h5py", "tifffile", "astropy.io.fits", "eccodes", "cftime"):
        with contextlib.suppress(ImportError):  # optional formats
            __import__(mod)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        _peak_rss_reset()
        reply: dict[str, Any] = {}
        try:
            parser = req.get("parser")
            note = _resolve(req["opener"])(req["path"], parser=parser, **req["kwargs"])
            if isinstance(note, str) and note.startswith("BAD:"):
                reply["bad"] = note[4:]
            else:
                reply["note"] = str(note)
        except MemoryError:
            reply["bad"] = f"MemoryError (address space limited to {memory >> 20} MiB)"
        except BaseException as e:  # noqa: BLE001  (everything is an outcome here)
            message = str(e)
            for note in getattr(e, "__notes__", ()):
                message += "\n" + note
            reply["exc"] = {
                "type": type(e).__name__,
                "mro": [c.__name__ for c in type(e).__mro__],
                "message": message,
                "virtualizarr": isinstance(e, errors.VirtualiZarrError),
            }
        peak = _peak_rss()
        reply["peak_rss"] = peak
        if "bad" not in reply and peak > req.get("max_rss", 1 << 62):
            reply["bad"] = f"memory: peak RSS {peak >> 20} MiB"
        out.write(json.dumps(reply, default=str) + "\n")
        out.flush()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker(int(sys.argv[2]))
