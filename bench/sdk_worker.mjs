// Peer contender: a job worker of the official Camunda 8 Node SDK (@camunda8/sdk), one per
// job type, doing the bench's trivial work: complete with {ok: true}.
//
//   node bench/sdk_worker.mjs --address 127.0.0.1:26700 --types a,b --max-jobs 32 \
//       [--poll-interval-ms 300] [--hold true]
//
// --hold true: every job is held (its handler does not finish) until a line "release" arrives
// on stdin, then all complete (the bench's "1,000 jobs in flight" phase).
// Prints "ready" once the workers are created (they poll from then on). SIGTERM: exit.
import { args, zeebeClient } from './c8.mjs';

const a = args();
const zbc = zeebeClient(a.address);
const opts = { maxJobsToActivate: Number(a['max-jobs'] ?? 32) };
if (a['poll-interval-ms']) opts.pollInterval = Number(a['poll-interval-ms']);
let released = null;
let held = 0;
if (a.hold === 'true') {
  let release;
  released = new Promise((r) => { release = r; });
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    if (d.split('\n').some((l) => l.trim() === 'release')) {
      release();
      console.log(`released ${held}`);
    }
  });
}
for (const taskType of a.types.split(',')) {
  zbc.createWorker({
    taskType,
    ...opts,
    taskHandler: released
      ? async (job) => { held++; await released; return job.complete({ ok: true }); }
      : (job) => job.complete({ ok: true }),
  });
}
console.log('ready');
process.on('SIGTERM', () => process.exit(0));
