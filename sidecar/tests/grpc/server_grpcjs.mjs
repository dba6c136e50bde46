// Conformance server on @grpc/grpc-js for skiff's gRPC client.
//
// Implements skiff.conformance.Conformance (conformance.proto) and appends what it observes to
// a JSON-lines log: {"tag": ..., "event": "start" | "done" | "error-sent" | "cancelled", ...}.
// Prints "listening" once it serves. SIGTERM shuts down gracefully (GOAWAY, in-flight calls
// finish); SIGKILL is the hard stop. Modules resolve through NODE_PATH (devstack/node_modules).
//
// usage: node server_grpcjs.mjs --port N --log FILE [--proto conformance.proto]
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const STANDARD_HEADERS = new Set(['user-agent', 'content-type', 'te', 'grpc-accept-encoding',
  'grpc-timeout', 'grpc-encoding']);

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option('--port'));
const logPath = option('--log');
const protoPath = option('--proto', join(dirname(fileURLToPath(import.meta.url)),
  'conformance.proto'));

function log(tag, event, fields = {}) {
  appendFileSync(logPath, JSON.stringify({ tag, event, ...fields }) + '\n');
}

function observeStart(call, method) {
  const all = call.metadata.getMap();
  const metadata = {};
  for (const [k, v] of Object.entries(all)) {
    if (!STANDARD_HEADERS.has(k)) metadata[k] = String(v);
  }
  const deadline = call.getDeadline(); // a Date or a number of ms since the epoch (Infinity)
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  const deadlineMs = Number.isFinite(at) ? at - Date.now() : null;
  log(call.request.tag, 'start', { method, metadata, user_agent: String(all['user-agent'] ?? ''),
    deadline_ms: deadlineMs });
  return metadata;
}

function watchCancel(call, state) {
  call.on('cancelled', () => {
    if (!state.finished) {
      state.cancelled = true;
      log(call.request.tag, 'cancelled', { sent: state.sent });
    }
  });
}

function unary(call, callback) {
  const req = call.request;
  const metadata = observeStart(call, 'Unary');
  const state = { cancelled: false, finished: false, sent: 0 };
  watchCancel(call, state);
  setTimeout(() => {
    if (state.cancelled) return;
    state.finished = true;
    if (req.status) {
      log(req.tag, 'error-sent');
      callback({ code: req.status, details: req.message });
      return;
    }
    log(req.tag, 'done');
    callback(null, { text: req.text, payload: Buffer.alloc(req.payload_size, 'x'), metadata });
  }, req.sleep_ms);
}

function stream(call) {
  const req = call.request;
  observeStart(call, 'Stream');
  const state = { cancelled: false, finished: false, sent: 0 };
  watchCancel(call, state);
  const next = () => {
    if (state.cancelled) return;
    if (state.sent >= req.count) {
      state.finished = true;
      if (req.status) {
        log(req.tag, 'error-sent');
        call.emit('error', { code: req.status, details: req.message });
      } else {
        log(req.tag, 'done');
        call.end();
      }
      return;
    }
    call.write({ text: req.text, index: state.sent, payload: Buffer.alloc(req.payload_size, 'x') });
    state.sent++;
    setTimeout(next, req.sleep_ms);
  };
  setTimeout(next, req.sleep_ms);
}

const definition = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(definition).skiff.conformance;
const server = new grpc.Server();
server.addService(pkg.Conformance.service, { Unary: unary, Stream: stream });
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`cannot bind port ${port}: ${err.message}`);
    process.exit(1);
  }
  console.log('listening');
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
