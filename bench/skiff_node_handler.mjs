// skiff contender (Node): a handler written with skiff's Node SDK doing the bench's trivial
// work: complete with {ok: true}. Job types from $JOB_TYPES, socket from $SKIFF_SOCKET.
import { Handler } from '../handler-protocol/node/index.js';

const app = new Handler({ name: 'bench-node', capacity: Number(process.env.CAPACITY ?? 32) });
for (const type of process.env.JOB_TYPES.split(',')) app.job(type, async () => ({ ok: true }));
process.on('SIGTERM', () => process.exit(0));
console.log('ready');
await app.run();
