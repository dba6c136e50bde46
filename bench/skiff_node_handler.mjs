// skiff contender (Node): a handler written with skiff's Node SDK doing the bench's trivial
// work: complete with {ok: true}. Job types from $JOB_TYPES, socket from $SKIFF_SOCKET,
// capacity from $CAPACITY (32).
//
// $HOLD=1: every task is held (not answered) until a line "release" arrives on stdin, then all
// complete (the bench's "1,000 tasks in flight" phase). $BACKOFF_MS: the SDK's reconnect delay
// while skiff is not there yet (start-up phase: the handler waits on the socket, skiff starts).
import { Handler } from '../handler-protocol/node/index.js';

const backoff = process.env.BACKOFF_MS ? Number(process.env.BACKOFF_MS) : undefined;
const app = new Handler({
  name: 'bench-node',
  capacity: Number(process.env.CAPACITY ?? 32),
  ...(backoff ? { backoffInitialMs: backoff, backoffMaxMs: backoff } : {}),
});
let work = async () => ({ ok: true });
if (process.env.HOLD === '1') {
  let release;
  const released = new Promise((r) => { release = r; });
  let held = 0;
  work = async () => { held++; await released; return { ok: true }; };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    if (d.split('\n').some((l) => l.trim() === 'release')) {
      release();
      console.log(`released ${held}`);
    }
  });
}
for (const type of process.env.JOB_TYPES.split(',')) app.job(type, work);
process.on('SIGTERM', () => process.exit(0));
console.log('ready');
await app.run();
process.exit(0);
