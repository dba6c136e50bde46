// The Node SDK's own CPU per record, without Kafka (the twin of
// handler-protocol/python/bench/sdk_cpu.py): a fake skiff (this process) keeps a handler (a
// child process running the SDK) busy with Kafka tasks shaped like the ones
// bench/kafka_bench.py drains, and reports the child's CPU per record.
//
//   node handler-protocol/node/bench/sdk_cpu.mjs [--sdk DIR]... [--records N]
//       [--capacity 64] [--batch 64] [--rounds 3] [--prof DIR]
//
// The fake skiff is cheap on purpose (pre-encoded frames, results counted, not parsed) and
// refills like skiff: every result frame it reads gives credits back, and the free credits
// leave as one `tasks` frame of up to --batch tasks. --sdk names a directory holding the SDK
// (its index.js) to measure (default: this checkout's); given several times, the versions take
// turns in every round, so they compare under the same load. The handler's function does what
// bench/kafka_node_handler.mjs's does (one field of the value, a header, a clock read). Output:
// one line per round, then the median; CPU is the child's user + system time (/proc), from its
// first task to its last result. --prof DIR: the child runs with --cpu-prof into DIR.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOPIC = 'business.bench.order-placed-bf6f41.v1';
const CHILD = `
const { Handler } = await import(process.env.SDK_URL);
const seen = [];
const app = new Handler({ name: 'sdk-cpu', capacity: Number(process.env.CAPACITY) });
app.topic(process.env.TOPIC, (task) => {
  void task.value.order_id;
  const produced = Number(task.record.headers['bench-produced-us']);
  const [s, ns] = process.hrtime();
  seen.push(s * 1e6 + Math.floor(ns / 1000) - produced);
});
await app.run();
`;

function taskFrame(i) {
  const part = i % 6;
  const c = (i * 7919) % 5000;
  const value = {
    event_id: `3f1c2b9e-8d4a-4c6e-9b2f-${i.toString(16).padStart(12, '0')}`,
    order_id: `O-${String(i).padStart(9, '0')}`,
    status: 'PLACED',
    placed_at: '2026-11-17T08:21:43.512Z',
    amount: `${i % 50000}.${String(i % 100).padStart(2, '0')}`,
    currency: 'EUR',
    item_count: (i % 12) + 1,
    customer: {
      customer_id: `C-${String(c).padStart(5, '0')}`, name: 'Grace Hopper',
      email: `grace.hopper.${c}@example.com`, country: 'NL',
    },
    sales_channel: 'web',
    coupon_code: i % 3 ? null : `SPRING${String(i % 30).padStart(2, '0')}`,
  };
  return JSON.stringify({
    type: 'task', id: `k-${TOPIC}-${part}-${i}-1`, source: 'kafka', topic: TOPIC,
    deadline: 1796689104041, attempt: 1, value,
    kafka: {
      topic: TOPIC, partition: part, offset: i, key: value.customer.customer_id,
      headers: { 'bench-produced-us': String(1796689104041000 + i) },
      timestamp: 1796689104041, schema_id: 7,
    },
  });
}

function frameOf(text) {
  const body = Buffer.from(text, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const tasksFrame = (bodies) => frameOf(bodies.length === 1 ? bodies[0]
  : `{"type":"tasks","tasks":[${bodies.join(',')}]}`);

function cpuS(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop().trim().split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ: 100 on Linux
}

const ACK = Buffer.from('"type":"ack"');
function countAcks(body) {
  let n = 0;
  for (let at = body.indexOf(ACK); at !== -1; at = body.indexOf(ACK, at + ACK.length)) n += 1;
  return n;
}

async function oneRound(opts, bodies, sdkDir) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdkcpu-'));
  const socketPath = path.join(dir, 's.sock');
  const server = net.createServer();
  await new Promise((resolve) => { server.listen(socketPath, resolve); });
  const env = {
    ...process.env, SDK_URL: pathToFileURL(path.join(sdkDir, 'index.js')).href,
    CAPACITY: String(opts.capacity), TOPIC, SKIFF_SOCKET: socketPath,
  };
  const args = opts.prof ? ['--cpu-prof', `--cpu-prof-dir=${opts.prof}`] : [];
  const child = spawn(process.execPath, [...args, '--input-type=module', '-e', CHILD],
    { env, stdio: 'inherit' });
  const exited = new Promise((resolve) => { child.on('exit', resolve); });
  const sock = await new Promise((resolve) => { server.once('connection', resolve); });
  const n = bodies.length;
  let sent = 0;
  let done = 0;
  let credits = opts.capacity;
  let framesIn = 0;
  let cpu0 = 0;
  let t0 = 0n;
  const refill = () => {
    const out = [];
    while (credits > 0 && sent < n) {
      const k = Math.min(credits, opts.batch, n - sent);
      out.push(tasksFrame(bodies.slice(sent, sent + k)));
      sent += k;
      credits -= k;
    }
    if (out.length > 0) sock.write(Buffer.concat(out));
  };
  const result = await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let welcomed = false;
    sock.on('error', reject);
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const body = buf.subarray(4, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(4 + body.length);
        if (!welcomed) { // the hello
          welcomed = true;
          sock.write(frameOf('{"type":"welcome","version":1,"session":"s-1",'
            + '"max_frame":4194304,"features":["batch","cancel","extend","kafka_extend"],'
            + '"methods":[]}'));
          cpu0 = cpuS(child.pid);
          t0 = process.hrtime.bigint();
          refill();
          continue;
        }
        framesIn += 1;
        const got = countAcks(body);
        if (got === 0) reject(new Error(`unexpected frame ${body.subarray(0, 200)}`));
        done += got;
        credits += got;
        if (done === n) {
          const wall = Number(process.hrtime.bigint() - t0) / 1e9;
          resolve({
            usPerRecord: ((cpuS(child.pid) - cpu0) / n) * 1e6,
            recordsPerS: n / wall,
            resultsPerFrame: n / framesIn,
          });
          sock.write(frameOf('{"type":"drain"}'));
          return;
        }
        refill();
      }
    });
  });
  await exited;
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return result;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const { values } = parseArgs({
  options: {
    sdk: { type: 'string', multiple: true },
    records: { type: 'string', default: '50000' },
    capacity: { type: 'string', default: '64' },
    batch: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    prof: { type: 'string' },
  },
});
const opts = {
  records: Number(values.records), capacity: Number(values.capacity),
  batch: Number(values.batch), rounds: Number(values.rounds), prof: values.prof,
};
const bodies = Array.from({ length: opts.records }, (_, i) => taskFrame(i));
const rows = new Map((values.sdk ?? [path.dirname(HERE)]).map((d) => [path.resolve(d), []]));
for (let r = 1; r <= opts.rounds; r += 1) {
  for (const [sdk, got] of rows) {
    const row = await oneRound(opts, bodies, sdk);
    got.push(row);
    console.log(`round ${r}, ${sdk}: ${row.usPerRecord.toFixed(1)} us/record handler CPU, `
      + `${row.recordsPerS.toFixed(0)} records/s, ${row.resultsPerFrame.toFixed(1)} results/frame`);
  }
}
for (const [sdk, got] of rows) {
  console.log(`median ${sdk}: ${median(got.map((x) => x.usPerRecord)).toFixed(1)} us/record, `
    + `${median(got.map((x) => x.recordsPerS)).toFixed(0)} records/s`);
}
