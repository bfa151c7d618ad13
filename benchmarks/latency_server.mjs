// HTTP/1.1 file server with Range support that behaves like a distant object store.
//
//     node latency_server.mjs ROOT PORT [--latency-ms 30] [--mbps 200]
//
// The same interface and behaviour as ../shared/tools/latency_server.py, but with an event
// loop instead of a thread per connection under one GIL, so its own CPU per request (~85 us
// warm, against ~290 us for the Python server: 2,235 small ranges cost 0.19 s against 0.65 s
// on the 2-core test machine) weighs less in a benchmark of thousands of requests run on the
// same machine as the client. A real object store's CPU is not on the client's machine.
//
// - Every GET or HEAD waits --latency-ms before it answers (time to first byte of S3 in
//   another region is 20-60 ms); concurrent requests wait concurrently.
// - A response body is streamed in pieces of up to 1 MiB at --mbps MB/s (10^6 bytes/s) per
//   response, as the Python server does (its cap is per request, not global): piece i is
//   written when len(piece 0..i) / bps has passed since the latency ran out. --mbps 0: no cap.
// - GET with one Range "bytes=a-b", "bytes=a-" or "bytes=-n": 206 with Content-Range; a start
//   at or past the end: 416 with "Content-Range: bytes */SIZE". Without Range: 200, whole file.
// - 404 (empty body) for a path that is not a file under ROOT (no URL decoding, "?query" cut).
// - GET /__stats (no latency) returns and resets {"requests", "bytes", "heads"}: requests and
//   bytes count the GETs answered 200/206 and their body lengths (not 404/416, not /__stats);
//   heads counts every HEAD. Extra field "cpu_s": this process's user + system CPU seconds
//   since the previous /__stats (the Python server has no such field).
// - Keep-alive with no idle timeout (as Python's handler), listen backlog 4096 (the Python
//   one's is 5), bound to 127.0.0.1 only.
//
// Where the Python server misbehaves the behaviour differs on purpose: a Range it cannot parse
// (it raises, and the connection is closed unanswered) is closed unanswered here too, but
// "bytes=b-a" with a > b is a 416 (Python sends a negative Content-Length), and a path such as
// "/../ROOTx/f" (a sibling folder sharing ROOT's name as a prefix) is a 404 (Python serves it).

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { performance } from "node:perf_hooks";

const PIECE = 1 << 20; // bytes written per paced piece, as the Python server's read size

function parseArgs(argv) {
  const positional = [];
  const opts = { latencyMs: 30, mbps: 200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--(latency-ms|mbps)(?:=(.*))?$/.exec(a);
    if (m) {
      const value = m[2] !== undefined ? m[2] : argv[++i];
      const x = Number(value);
      if (value === undefined || !Number.isFinite(x)) {
        throw new Error(`--${m[1]} needs a number, got ${value}`);
      }
      if (m[1] === "latency-ms") opts.latencyMs = x;
      else opts.mbps = x;
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) {
    throw new Error("usage: node latency_server.mjs ROOT PORT [--latency-ms 30] [--mbps 200]");
  }
  return { root: path.resolve(positional[0]), port: Number(positional[1]), ...opts };
}

// Python's repr() of st_mtime: CPython computes sec + nsec * 1e-9 in doubles, and prints the
// shortest round-trip digits (as JavaScript does) but always with a ".0" on whole numbers.
function pythonMtime(st) {
  const sec = st.mtimeNs / 1000000000n;
  const nsec = st.mtimeNs % 1000000000n;
  const x = Number(sec) + Number(nsec) * 1e-9;
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

function fileHeaders(st) {
  const lastModified = new Date(Number(st.mtimeNs / 1000000n)).toUTCString();
  return {
    "Accept-Ranges": "bytes",
    "Last-Modified": lastModified,
    ETag: `"${pythonMtime(st)}-${st.size}"`,
  };
}

// Calls fn at performance.now() >= deadline (a timer may fire a little early: re-armed then).
function at(deadline, fn) {
  const wait = deadline - performance.now();
  if (wait <= 0) return fn();
  setTimeout(() => at(deadline, fn), Math.ceil(wait));
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const { root } = args;
  const latency = args.latencyMs;
  const bytesPerMs = args.mbps * 1e3; // MB/s = 1e6 B/s = 1e3 B/ms
  const stats = { requests: 0, bytes: 0, heads: 0 };
  let cpuMark = cpuSeconds();

  // The file under ROOT a request path names, or null. Mirrors os.path.normpath(join(...)).
  function resolve(url) {
    const rel = url.split("?")[0].replace(/^\/+/, "");
    const p = path.normalize(path.join(root, rel));
    return p === root || p.startsWith(root + path.sep) ? p : null;
  }

  function empty(res, status, headers = {}) {
    res.writeHead(status, { ...headers, "Content-Length": "0" });
    res.end();
  }

  // Open files by path, reopened when the path names another file (inode) than before. The
  // file system calls are synchronous: on page-cached files a stat or a pread costs a few
  // microseconds, less than a hop through libuv's thread pool and back.
  const open = new Map();

  // {fd, size, headers} of the regular file p, or null (missing, a folder, unreadable).
  function lookup(p) {
    if (p === null) return null;
    let st;
    try {
      st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
    } catch {
      return null;
    }
    if (st === undefined || !st.isFile()) return null;
    const key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
    let entry = open.get(p);
    if (entry === undefined || entry.key !== key) {
      if (entry !== undefined) fs.close(entry.fd, () => {});
      if (open.size >= 512) {
        for (const e of open.values()) fs.close(e.fd, () => {});
        open.clear();
      }
      let fd;
      try {
        fd = fs.openSync(p, "r");
      } catch {
        return null;
      }
      entry = { key, fd, size: Number(st.size), headers: fileHeaders(st) };
      open.set(p, entry);
    }
    return entry;
  }

  function head(req, res, arrival) {
    stats.heads += 1;
    const f = lookup(resolve(req.url));
    at(arrival + latency, () => {
      if (f === null) return empty(res, 404);
      res.writeHead(200, { "Content-Length": String(f.size), ...f.headers });
      res.end();
    });
  }

  function get(req, res, arrival) {
    if (req.url === "/__stats") {
      const now = cpuSeconds();
      const body = JSON.stringify({ ...stats, cpu_s: Number((now - cpuMark).toFixed(6)) });
      cpuMark = now;
      stats.requests = stats.bytes = stats.heads = 0;
      res.writeHead(200, { "Content-Length": String(Buffer.byteLength(body)) });
      return res.end(body);
    }
    const f = lookup(resolve(req.url));
    if (f === null) return at(arrival + latency, () => empty(res, 404));
    const size = f.size;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const rng = req.headers.range;
    if (rng !== undefined) {
      const m = /^bytes=(\d*)-(\d*)/.exec(rng);
      if (m === null || (m[1] === "" && m[2] === "")) {
        return at(arrival + latency, () => req.socket.destroy()); // Python's handler raises
      }
      if (m[1] === "") {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        end = m[2] !== "" ? Math.min(Number(m[2]), size - 1) : size - 1;
      }
      if (start >= size || end < start) {
        return at(arrival + latency, () => empty(res, 416, { "Content-Range": `bytes */${size}` }));
      }
      status = 206;
    }
    send(res, f, status, start, end, arrival + latency);
  }

  // Streams bytes start..end of file f: piece 0 with the headers once the latency and its own
  // transfer time have passed, each further piece len/bps after the previous one was due (or
  // when the socket drained, if the client reads slower than that). Piece 0 is read at once.
  function send(res, f, status, start, end, firstByte) {
    const n = end - start + 1;
    let offset = start;
    let closed = false;
    res.on("close", () => {
      closed = true;
    });
    const readPiece = () => {
      const len = Math.min(PIECE, end + 1 - offset);
      const buf = Buffer.allocUnsafe(len);
      let got = -1;
      try {
        got = len ? fs.readSync(f.fd, buf, 0, len, offset) : 0;
      } catch {}
      offset += len;
      return got === len ? buf : null; // the file shrank: the Python server stops short too
    };
    const writePiece = (buf, deadline, first) => {
      if (closed) return;
      if (first) {
        stats.requests += 1;
        stats.bytes += n;
        const headers = { "Content-Length": String(n), ...f.headers };
        if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${f.size}`;
        res.writeHead(status, headers);
      }
      if (buf === null) return res.destroy();
      res.write(buf);
      if (offset > end) return res.end();
      const next = readPiece();
      // due len/bps after the previous piece's due time (not after it drained: the socket's
      // own time must not slow the stream below --mbps), and never before the socket drained
      const due = deadline + (bytesPerMs && next ? next.length / bytesPerMs : 0);
      const go = () => at(due, () => writePiece(next, due, false));
      if (!res.writableNeedDrain) go();
      else res.once("drain", go);
    };
    const buf = readPiece();
    const due = firstByte + (bytesPerMs && buf ? buf.length / bytesPerMs : 0);
    at(due, () => writePiece(buf, due, true));
  }

  const server = http.createServer((req, res) => {
    const arrival = performance.now();
    if (req.method === "GET") get(req, res, arrival);
    else if (req.method === "HEAD") head(req, res, arrival);
    else empty(res, 501);
  });
  server.keepAliveTimeout = 0; // no idle timeout: Python's handler keeps connections open
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.listen({ host: "127.0.0.1", port: args.port, backlog: 4096 });
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
}

main();
