// HTTP/1.1 file server with Range support that behaves like a distant object store.
//
//     node latency_server.mjs ROOT PORT [--latency-ms 30] [--mbps 200]
//
// The same interface and behaviour as ../shared/tools/latency_server.py, but with an event
// loop instead of a thread per connection under one GIL, so its own CPU per request (tens of
// microseconds instead of ~0.5 ms) does not dominate a benchmark of thousands of requests run
// on the same machine as the client. A real object store's CPU is not on the client's machine.
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

  function statFile(p, cb) {
    if (p === null) return cb(null);
    fs.stat(p, { bigint: true }, (err, st) => cb(err || !st.isFile() ? null : st));
  }

  function head(req, res, arrival) {
    stats.heads += 1;
    statFile(resolve(req.url), (st) =>
      at(arrival + latency, () => {
        if (st === null) return empty(res, 404);
        res.writeHead(200, { "Content-Length": String(st.size), ...fileHeaders(st) });
        res.end();
      }),
    );
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
    const p = resolve(req.url);
    statFile(p, (st) => {
      if (st === null) return at(arrival + latency, () => empty(res, 404));
      const size = Number(st.size);
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
          return at(arrival + latency, () =>
            empty(res, 416, { "Content-Range": `bytes */${size}` }),
          );
        }
        status = 206;
      }
      send(res, p, st, status, start, end, arrival + latency);
    });
  }

  // Streams bytes start..end of p: piece 0 with the headers once the latency and its own
  // transfer time have passed, each further piece len/bps after the previous one (or after
  // the socket drained, if the client reads slower than that). The file is opened and the
  // first piece read while the latency runs.
  function send(res, p, st, status, start, end, firstByte) {
    const n = end - start + 1;
    let offset = start;
    let deadline = firstByte;
    let fd = null;
    let closed = false;
    const finish = () => {
      closed = true;
      if (fd !== null) fs.close(fd, () => {});
      fd = null;
    };
    res.on("close", finish);
    const fail = () => {
      if (!closed) res.destroy();
      finish();
    };
    const readPiece = (cb) => {
      const len = Math.min(PIECE, end + 1 - offset);
      const buf = Buffer.allocUnsafe(len);
      fs.read(fd, buf, 0, len, offset, (err, got) => {
        if (err || got !== len) return fail(); // the file shrank: the Python server stops short
        offset += len;
        cb(buf);
      });
    };
    const writePiece = (buf, first) => {
      if (closed) return;
      if (first) {
        stats.requests += 1;
        stats.bytes += n;
        const headers = { "Content-Length": String(n), ...fileHeaders(st) };
        if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${st.size}`;
        res.writeHead(status, headers);
      }
      res.write(buf);
      if (offset > end) return res.end();
      readPiece((next) => {
        const go = () => {
          const now = performance.now();
          deadline = Math.max(deadline, now) + (bytesPerMs ? next.length / bytesPerMs : 0);
          at(deadline, () => writePiece(next, false));
        };
        if (!res.writableNeedDrain || closed) go();
        else res.once("drain", go);
      });
    };
    fs.open(p, "r", (err, handle) => {
      if (err) return at(firstByte, () => empty(res, 404));
      if (closed) return fs.close(handle, () => {});
      fd = handle;
      if (n === 0) return at(firstByte, () => writePiece(Buffer.alloc(0), true));
      readPiece((buf) => {
        deadline = firstByte + (bytesPerMs ? buf.length / bytesPerMs : 0);
        at(deadline, () => writePiece(buf, true));
      });
    });
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
