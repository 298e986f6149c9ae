#!/usr/bin/env node
// A compiled-speed gRPC load generator for the Python service benchmarks.
//
// Command (normally run for you by bench/overload.py and bench/service.py):
//     node bench/grpc_loadgen.js --target HOST:PORT --frames FILE --seconds S
//         (--rate R | --concurrency N) [--connections C] [--timeout-s T] [--warmup N]
//
// Why it exists: a Python generator on the same two cores as the server
// spends more CPU per request than the server's cheap paths, so it measures
// itself. This one is Node.js's built-in HTTP/2 (nghttp2, C) with no
// dependencies; it speaks gRPC directly: POST to the method path with
// content-type application/grpc, the request as a length-prefixed protobuf
// message, the status read from grpc-status (trailers, or the headers of a
// trailers-only answer).
//
// FILE holds ready gRPC frames (1 flag byte, 4-byte big-endian length,
// message), written by bench/node_load.py; requests cycle through them.
// Open loop (--rate): requests start at R per second on a fixed schedule,
// whatever the answers; the figures say how late the generator itself was.
// Closed loop (--concurrency): N requests in the air, each answer starts the
// next. Prints one JSON object. Only loopback targets are allowed.
"use strict";

const http2 = require("http2");
const fs = require("fs");

const STATUS = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

function parseArgs(argv) {
  const args = { connections: 4, timeoutS: 30, warmup: 0, method: "/semsearch.v1.SearchService/Search",
    maxOutstanding: 50000 };
  const names = { "--target": "target", "--frames": "frames", "--seconds": "seconds", "--rate": "rate",
    "--concurrency": "concurrency", "--connections": "connections", "--timeout-s": "timeoutS",
    "--warmup": "warmup", "--method": "method", "--max-outstanding": "maxOutstanding" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[key] = ["target", "frames", "method"].includes(key) ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!args.target || !args.frames || !args.seconds || (!args.rate === !args.concurrency)) {
    throw new Error("need --target, --frames, --seconds and one of --rate / --concurrency");
  }
  const host = args.target.slice(0, args.target.lastIndexOf(":")).replace(/[[\]]/g, "");
  if (!["127.0.0.1", "localhost", "::1"].includes(host)) throw new Error(`refusing a non-loopback target ${args.target}`);
  return args;
}

function readFrames(path) {
  const data = fs.readFileSync(path);
  const frames = [];
  for (let at = 0; at + 5 <= data.length;) {
    const end = at + 5 + data.readUInt32BE(at + 1);
    frames.push(data.subarray(at, end));
    at = end;
  }
  if (frames.length === 0) throw new Error(`no frames in ${path}`);
  return frames;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const frames = readFrames(args.frames);
  const sessions = Array.from({ length: args.connections }, () => {
    const session = http2.connect(`http://${args.target}`);
    session.on("error", () => {});
    return session;
  });
  const headers = { ":method": "POST", ":path": args.method, "content-type": "application/grpc",
    te: "trailers", "grpc-timeout": `${Math.round(args.timeoutS * 1000)}m` };
  let cursor = 0;
  let measuring = false;
  const latencies = {}; // status name -> [ms]
  const messages = {}; // status name -> the first grpc-message seen with it
  let outstanding = 0;
  let sent = 0;
  let skipped = 0;

  function send(onDone) {
    const session = sessions[cursor % sessions.length];
    const frame = frames[cursor % frames.length];
    cursor += 1;
    const counted = measuring;
    const started = process.hrtime.bigint();
    let status = null;
    let message = null;
    outstanding += 1;
    const stream = session.request(headers);
    const read = (h) => {
      if (h["grpc-status"] !== undefined) { status = Number(h["grpc-status"]); message = h["grpc-message"] || null; }
    };
    stream.on("response", read);
    stream.on("trailers", read);
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => {
      outstanding -= 1;
      const name = status === null ? "NO_STATUS" : (STATUS[status] || `CODE_${status}`);
      if (counted) (latencies[name] ||= []).push(Number(process.hrtime.bigint() - started) / 1e6);
      if (name !== "OK" && message !== null && !(name in messages)) messages[name] = decodeURIComponent(message);
      if (onDone) onDone();
    });
    stream.end(frame);
  }

  function warm(n, then) {
    if (n <= 0) return then();
    send(() => warm(n - 1, then));
  }

  const cpuBefore = process.cpuUsage();
  const lags = [];
  let startedAt = 0;
  let endAt = 0;

  function report(drained) {
    const cpu = process.cpuUsage(cpuBefore);
    const wall = (Number(process.hrtime.bigint()) / 1e6 - startedAt) / 1000;
    const byCode = {};
    for (const [name, values] of Object.entries(latencies)) {
      values.sort((a, b) => a - b);
      byCode[name] = { n: values.length, p50_ms: percentile(values, 0.5), p99_ms: percentile(values, 0.99),
        max_ms: values[values.length - 1] };
    }
    lags.sort((a, b) => a - b);
    const ok = byCode.OK ? byCode.OK.n : 0;
    const errors = {};
    for (const [name, v] of Object.entries(byCode)) if (name !== "OK") errors[name] = v.n;
    if (outstanding > 0) errors.UNANSWERED = outstanding;
    const out = {
      mode: args.rate ? "open" : "closed", offered_rate: args.rate || null, concurrency: args.concurrency || null,
      seconds: args.seconds, sent, ok, errors, skipped_by_generator: skipped, drained,
      qps: ok / args.seconds, ok_qps: ok / args.seconds, requests: sent,
      p50_ms: byCode.OK ? byCode.OK.p50_ms : null, p99_ms: byCode.OK ? byCode.OK.p99_ms : null,
      shed_p50_ms: byCode.RESOURCE_EXHAUSTED ? byCode.RESOURCE_EXHAUSTED.p50_ms : null,
      shed_p99_ms: byCode.RESOURCE_EXHAUSTED ? byCode.RESOURCE_EXHAUSTED.p99_ms : null,
      by_code: byCode, messages,
      send_lag_p50_ms: percentile(lags, 0.5), send_lag_p99_ms: percentile(lags, 0.99),
      send_lag_max_ms: lags.length ? lags[lags.length - 1] : null,
      generator_cpu_cores: (cpu.user + cpu.system) / 1e6 / wall,
    };
    process.stdout.write(JSON.stringify(out) + "\n");
    for (const s of sessions) s.destroy();
    process.exit(0);
  }

  function drain() {
    // Answers still due after the window: wait for them (bounded by the deadline), then report.
    const giveUp = Date.now() + args.timeoutS * 1000 + 2000;
    const poll = setInterval(() => {
      if (outstanding === 0 || Date.now() > giveUp) { clearInterval(poll); report(outstanding === 0); }
    }, 5);
  }

  function openLoop() {
    const interval = 1000 / args.rate;
    let next = 0; // index of the next scheduled request
    function tick() {
      const elapsed = Number(process.hrtime.bigint()) / 1e6 - startedAt;
      if (elapsed >= args.seconds * 1000) return drain();
      while (next * interval <= elapsed) {
        lags.push(elapsed - next * interval);
        next += 1;
        if (outstanding >= args.maxOutstanding) { skipped += 1; continue; }
        sent += 1;
        send(null);
      }
      setTimeout(tick, 1); // timers, not setImmediate: a spinning generator would take a core from the server
    }
    tick();
  }

  function closedLoop() {
    function worker() {
      if (Number(process.hrtime.bigint()) / 1e6 >= endAt) {
        if (outstanding === 0) report(true);
        return;
      }
      sent += 1;
      send(worker);
    }
    for (let i = 0; i < args.concurrency; i += 1) worker();
  }

  warm(args.warmup, () => {
    measuring = true;
    startedAt = Number(process.hrtime.bigint()) / 1e6;
    endAt = startedAt + args.seconds * 1000;
    if (args.rate) openLoop(); else closedLoop();
  });
}

try {
  main();
} catch (err) {
  process.stderr.write(`grpc_loadgen: ${err.message}\n`);
  process.exit(2);
}
