// Peer contender: a job worker of the official Camunda 8 Node SDK (@camunda8/sdk), one per
// job type, doing the bench's trivial work: complete with {ok: true}.
//
//   node bench/sdk_worker.mjs --address 127.0.0.1:26700 --types a,b --max-jobs 32 [--poll-interval-ms 300]
//
// Prints "ready" once the workers are created (they poll from then on). SIGTERM: exit.
import { args, zeebeClient } from './c8.mjs';

const a = args();
const zbc = zeebeClient(a.address);
const opts = { maxJobsToActivate: Number(a['max-jobs'] ?? 32) };
if (a['poll-interval-ms']) opts.pollInterval = Number(a['poll-interval-ms']);
for (const taskType of a.types.split(',')) {
  zbc.createWorker({ taskType, ...opts, taskHandler: (job) => job.complete({ ok: true }) });
}
console.log('ready');
process.on('SIGTERM', () => process.exit(0));
