#!/usr/bin/env node
// skiff devstack: gRPC fault proxy (a test tool, not a stand-in for any engine).
//
// Forwards every gRPC call (unary and streaming, HTTP/2 cleartext) from its listen port to an
// upstream gateway and, on command, injects faults. Node >= 18, built-in modules only.
//
//   node grpc-fault-proxy.mjs [--listen 127.0.0.1:26650] [--target 127.0.0.1:26500]
//                             [--control 127.0.0.1:26651]
//   (env: SKIFF_PROXY_LISTEN, SKIFF_PROXY_TARGET, SKIFF_PROXY_CONTROL; port 0 = any free port)
//
// Prints one JSON line on stdout when listening: {"listen":PORT,"control":PORT,"target":"..."}.
//
// Control API (HTTP/1.1 on the control port; GET or POST; parameters in the query string;
// every answer is the JSON state):
//   /status                     state and counters
//   /latency?ms=N[&jitter=J]    delay every forwarded frame batch (request headers and data
//                               toward the gateway, response headers, data and trailers back)
//                               by N ms (+ random 0..J), order kept
//   /fail?code=UNAVAILABLE|RESOURCE_EXHAUSTED|<name or number>[&method=ActivateJobs]
//        [&count=N][&message=text]
//                               answer new calls trailers-only with that status; method matches
//                               the full path or its last segment; count limits how many calls
//                               the rule answers (default: until /normal)
//   /stall[?method=M][&count=N] new matching calls get no answer at all (until the client gives
//                               up or /normal)
//   /reset[?mode=destroy|close|goaway|rst][&h2code=N]
//                               drop all current client connections: destroy = TCP RST
//                               (default), close = TCP FIN, both without HTTP/2 GOAWAY;
//                               goaway = GOAWAY(NO_ERROR), calls in flight may finish, then
//                               close after 1 s; rst = RST_STREAM with HTTP/2 error h2code
//                               (default 2, INTERNAL_ERROR) on every open call, connections
//                               stay (note: gRPC clients retry REFUSED_STREAM, 7, by themselves)
//   /down                       close all connections and stop listening (connection refused)
//   /up                         listen again
//   /normal                     remove latency, rules and stalls, listen again if down
//   /quit                       exit
import http from 'node:http';
import http2 from 'node:http2';
import process from 'node:process';

const {
  HTTP2_HEADER_STATUS, HTTP2_HEADER_PATH, HTTP2_HEADER_METHOD, HTTP2_HEADER_AUTHORITY,
  HTTP2_HEADER_SCHEME, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM,
} = http2.constants;

const GRPC_CODES = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

function arg(name, envName, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[envName] || dflt;
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  if (i < 0) return { host: '127.0.0.1', port: Number(s) };
  return { host: s.slice(0, i) || '127.0.0.1', port: Number(s.slice(i + 1)) };
}

const listenAddr = hostPort(arg('listen', 'SKIFF_PROXY_LISTEN', '127.0.0.1:26650'));
const controlAddr = hostPort(arg('control', 'SKIFF_PROXY_CONTROL', '127.0.0.1:26651'));
const targetAddr = hostPort(arg('target', 'SKIFF_PROXY_TARGET', '127.0.0.1:26500'));
const targetUrl = `http://${targetAddr.host}:${targetAddr.port}`;
const quiet = process.argv.includes('--quiet');

const state = {
  latencyMs: 0,
  jitterMs: 0,
  rules: [], // {kind: 'fail'|'stall', method, code, message, remaining (null = unlimited)}
  down: false,
  counters: {
    connections: 0, calls: 0, forwarded: 0, failed: 0, stalled: 0, resets: 0,
    upstreamErrors: 0,
  },
};

const sessions = new Set(); // downstream sessions
const sockets = new Set(); // their TCP sockets
const streams = new Set(); // open downstream streams
const stalledStreams = new Set(); // calls held by a stall rule

function log(...a) {
  if (!quiet) console.error(new Date().toISOString(), 'grpc-fault-proxy:', ...a);
}

// ---- delays that keep order: one FIFO per stream direction ------------------------------------
class DelayQueue {
  constructor() { this.items = []; this.timer = null; }

  push(fn) {
    const delay = state.latencyMs + (state.jitterMs ? Math.random() * state.jitterMs : 0);
    if (delay <= 0 && this.items.length === 0) { run(fn); return; }
    const last = this.items.length ? this.items[this.items.length - 1].at : 0;
    this.items.push({ at: Math.max(Date.now() + delay, last), fn });
    this.schedule();
  }

  schedule() {
    if (this.timer || this.items.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      while (this.items.length && this.items[0].at <= now) run(this.items.shift().fn);
      this.schedule();
    }, Math.max(0, this.items[0].at - Date.now()));
  }
}

function run(fn) {
  try {
    fn();
  } catch (e) {
    log('forwarding step failed:', e.code || e.message);
  }
}

// ---- rules --------------------------------------------------------------------------------
function methodMatches(rule, path) {
  if (!rule.method) return true;
  return path === rule.method || path.endsWith(`/${rule.method}`);
}

function takeRule(path) {
  for (const r of state.rules) {
    if (!methodMatches(r, path)) continue;
    if (r.remaining !== null) {
      r.remaining -= 1;
      if (r.remaining <= 0) state.rules = state.rules.filter((x) => x !== r);
    }
    return r;
  }
  return null;
}

// ---- forwarding ---------------------------------------------------------------------------
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding',
  'upgrade', 'host', 'http2-settings']);

function copyHeaders(h, skipPseudo) {
  const out = {};
  for (const [k, v] of Object.entries(h)) {
    if (HOP_BY_HOP.has(k)) continue;
    if (skipPseudo && k.startsWith(':')) continue;
    out[k] = v;
  }
  return out;
}

function upstreamFor(session) {
  let up = session.skiffUpstream;
  if (up && !up.closed && !up.destroyed) return up;
  up = http2.connect(targetUrl);
  up.on('error', (e) => {
    state.counters.upstreamErrors += 1;
    log('upstream session error:', e.code || e.message);
  });
  // The gateway went away: the client loses its connection too, as it would without us.
  up.on('close', () => { if (session.skiffUpstream === up && !session.destroyed) session.destroy(); });
  up.on('goaway', () => { if (!session.destroyed) session.close(); });
  session.skiffUpstream = up;
  return up;
}

function trailersOnly(stream, code, message) {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({
    [HTTP2_HEADER_STATUS]: 200,
    'content-type': 'application/grpc',
    'grpc-status': String(code),
    'grpc-message': encodeURIComponent(message),
  }, { endStream: true });
}

function onStream(stream, headers) {
  const path = headers[HTTP2_HEADER_PATH] || '';
  state.counters.calls += 1;
  streams.add(stream);
  stream.on('close', () => streams.delete(stream));
  stream.on('error', () => {});

  const rule = takeRule(path);
  if (rule && rule.kind === 'stall') {
    state.counters.stalled += 1;
    stalledStreams.add(stream);
    stream.on('close', () => stalledStreams.delete(stream));
    stream.resume(); // swallow the request; never answer
    return;
  }
  if (rule) {
    state.counters.failed += 1;
    stream.resume();
    trailersOnly(stream, rule.code, rule.message);
    return;
  }

  state.counters.forwarded += 1;
  const toUp = new DelayQueue();
  const toDown = new DelayQueue();
  const reqHeaders = copyHeaders(headers, true);
  reqHeaders[HTTP2_HEADER_METHOD] = headers[HTTP2_HEADER_METHOD] || 'POST';
  reqHeaders[HTTP2_HEADER_PATH] = path;
  reqHeaders[HTTP2_HEADER_SCHEME] = 'http';
  reqHeaders[HTTP2_HEADER_AUTHORITY] = headers[HTTP2_HEADER_AUTHORITY] ||
    `${targetAddr.host}:${targetAddr.port}`;

  let up;
  const pending = [];
  let requestEnded = false;
  toUp.push(() => {
    if (stream.destroyed || stream.closed) return;
    let session;
    try {
      session = upstreamFor(stream.session);
      up = session.request(reqHeaders, { endStream: false });
    } catch (e) {
      state.counters.upstreamErrors += 1;
      trailersOnly(stream, GRPC_CODES.UNAVAILABLE, `fault proxy: upstream: ${e.message}`);
      return;
    }
    wireUpstream(stream, up, toDown);
    // Flush request data that arrived before the upstream stream existed.
    for (const chunk of pending) up.write(chunk);
    pending.length = 0;
    if (requestEnded) up.end();
  });

  stream.on('data', (chunk) => {
    toUp.push(() => {
      if (!up) { pending.push(chunk); return; }
      if (up.destroyed || up.closed) return;
      writeWithBackpressure(up, stream, chunk);
    });
  });
  stream.on('end', () => {
    toUp.push(() => {
      requestEnded = true;
      if (up && !up.destroyed && !up.closed) up.end();
    });
  });
  stream.on('close', () => {
    // Client cancelled (RST_STREAM) or the call finished: release the upstream call.
    if (up && !up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL);
  });
}

// HTTP/2 flow control end to end: stop reading the source while the destination is full.
function writeWithBackpressure(dst, src, chunk) {
  if (dst.write(chunk) || dst.skiffAwaitingDrain) return;
  dst.skiffAwaitingDrain = true;
  src.pause();
  dst.once('drain', () => {
    dst.skiffAwaitingDrain = false;
    src.resume();
  });
}

function wireUpstream(stream, up, toDown) {
  let trailers = null;
  let responded = false;
  let endedWithHeaders = false;

  up.on('response', (headers, flags) => {
    const h = copyHeaders(headers, false);
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    toDown.push(() => {
      if (stream.destroyed || stream.closed) return;
      responded = true;
      endedWithHeaders = endStream;
      if (endStream) {
        stream.respond(h, { endStream: true }); // trailers-only answer from the gateway
      } else {
        stream.respond(h, { waitForTrailers: true });
      }
    });
  });
  up.on('trailers', (t) => { trailers = copyHeaders(t, true); });
  up.on('data', (chunk) => {
    toDown.push(() => {
      if (stream.destroyed || stream.closed) return;
      writeWithBackpressure(stream, up, chunk);
    });
  });
  stream.on('wantTrailers', () => {
    stream.sendTrailers(trailers || { 'grpc-status': String(GRPC_CODES.INTERNAL),
      'grpc-message': 'fault proxy: upstream sent no trailers' });
  });
  up.on('end', () => {
    toDown.push(() => {
      if (stream.destroyed || stream.closed || !responded || endedWithHeaders) return;
      if (!stream.writableEnded) stream.end();
    });
  });
  up.on('error', (e) => {
    state.counters.upstreamErrors += 1;
    log('upstream stream error:', e.code || e.message);
  });
  up.on('close', () => {
    const code = up.rstCode;
    toDown.push(() => {
      if (stream.destroyed || stream.closed) return;
      if (!responded) {
        trailersOnly(stream, GRPC_CODES.UNAVAILABLE, 'fault proxy: upstream unavailable');
      } else if (code && code !== 0 && !stream.writableEnded) {
        stream.close(code); // mirror the gateway's RST_STREAM
      }
    });
  });
}

// ---- server -------------------------------------------------------------------------------
let server = null;
let listenPort = listenAddr.port;

function startServer(cb) {
  server = http2.createServer({ allowHTTP1: false });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  server.on('session', (session) => {
    state.counters.connections += 1;
    sessions.add(session);
    session.on('error', () => {});
    session.on('close', () => {
      sessions.delete(session);
      const up = session.skiffUpstream;
      if (up && !up.destroyed) up.close();
    });
  });
  server.on('stream', onStream);
  server.on('error', (e) => { log('listen error:', e.message); process.exit(1); });
  server.listen(listenPort, listenAddr.host, () => {
    listenPort = server.address().port;
    cb?.();
  });
}

function resetAll(mode, h2code) {
  state.counters.resets += 1;
  if (mode === 'rst') {
    for (const s of [...streams]) if (!s.closed && !s.destroyed) s.close(h2code);
    return;
  }
  if (mode === 'goaway') {
    for (const s of [...sessions]) {
      try { s.goaway(http2.constants.NGHTTP2_NO_ERROR); } catch { /* closed */ }
      s.close();
      setTimeout(() => { if (!s.destroyed) s.destroy(); }, 1000);
    }
    return;
  }
  // destroy: TCP RST (no GOAWAY, no FIN); close: plain FIN without GOAWAY.
  for (const sock of [...sockets]) {
    if (mode !== 'close' && typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
    else sock.destroy();
  }
  for (const s of [...sessions]) {
    const up = s.skiffUpstream;
    if (up && !up.destroyed) up.destroy();
  }
}

function goDown(cb) {
  if (state.down) { cb(); return; }
  state.down = true;
  const srv = server;
  server = null;
  srv.close(() => {});
  resetAll('destroy');
  cb();
}

function goUp(cb) {
  if (!state.down) { cb(); return; }
  state.down = false;
  startServer(cb);
}

function snapshot() {
  return {
    listen: listenPort,
    target: `${targetAddr.host}:${targetAddr.port}`,
    latencyMs: state.latencyMs,
    jitterMs: state.jitterMs,
    down: state.down,
    rules: state.rules.map((r) => ({ ...r })),
    openConnections: sessions.size,
    openCalls: streams.size,
    counters: { ...state.counters },
  };
}

function parseCode(s) {
  if (s === undefined || s === null || s === '') return GRPC_CODES.UNAVAILABLE;
  if (/^\d+$/.test(s)) return Number(s);
  const c = GRPC_CODES[s.toUpperCase()];
  if (c === undefined) throw new Error(`unknown gRPC code ${s}`);
  return c;
}

function control(req, res) {
  const url = new URL(req.url, 'http://control');
  const q = url.searchParams;
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const ok = () => reply(200, snapshot());
  try {
    const count = q.has('count') ? Number(q.get('count')) : null;
    switch (url.pathname) {
      case '/':
      case '/status':
        return ok();
      case '/latency':
        state.latencyMs = Number(q.get('ms') || 0);
        state.jitterMs = Number(q.get('jitter') || 0);
        log(`latency ${state.latencyMs} ms (+${state.jitterMs})`);
        return ok();
      case '/fail': {
        const code = parseCode(q.get('code'));
        const name = Object.keys(GRPC_CODES).find((k) => GRPC_CODES[k] === code) || String(code);
        state.rules.push({
          kind: 'fail', method: q.get('method') || null, code,
          message: q.get('message') || `fault proxy: injected ${name}`, remaining: count,
        });
        log(`fail ${name} method=${q.get('method') || '*'} count=${count ?? 'unlimited'}`);
        return ok();
      }
      case '/stall':
        state.rules.push({ kind: 'stall', method: q.get('method') || null, remaining: count });
        log(`stall method=${q.get('method') || '*'} count=${count ?? 'unlimited'}`);
        return ok();
      case '/reset': {
        const mode = q.get('mode') || 'destroy';
        if (!['destroy', 'close', 'goaway', 'rst'].includes(mode)) {
          throw new Error(`unknown reset mode ${mode}`);
        }
        const h2code = Number(q.get('h2code') || NGHTTP2_INTERNAL_ERROR);
        resetAll(mode, h2code);
        log(`reset (${mode}${mode === 'rst' ? ` h2code ${h2code}` : ''})`);
        return ok();
      }
      case '/down':
        return goDown(() => { log('down'); ok(); });
      case '/up':
        return goUp(() => { log('up'); ok(); });
      case '/normal':
        state.latencyMs = 0;
        state.jitterMs = 0;
        state.rules = [];
        for (const s of [...stalledStreams]) {
          // stalled calls: give them an answer so clients do not hang on forever
          trailersOnly(s, GRPC_CODES.UNAVAILABLE, 'fault proxy: stall ended');
        }
        stalledStreams.clear();
        return goUp(() => { log('normal'); ok(); });
      case '/quit':
        reply(200, snapshot());
        setTimeout(() => process.exit(0), 10);
        return undefined;
      default:
        return reply(404, { error: `unknown command ${url.pathname}` });
    }
  } catch (e) {
    return reply(400, { error: e.message });
  }
}

const controlServer = http.createServer(control);
controlServer.on('error', (e) => { log('control listen error:', e.message); process.exit(1); });

startServer(() => {
  controlServer.listen(controlAddr.port, controlAddr.host, () => {
    const info = {
      listen: listenPort,
      control: controlServer.address().port,
      target: `${targetAddr.host}:${targetAddr.port}`,
    };
    process.stdout.write(`${JSON.stringify(info)}\n`);
    log(`listening on ${listenAddr.host}:${info.listen} -> ${info.target}, control ` +
      `${controlAddr.host}:${info.control}`);
  });
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
