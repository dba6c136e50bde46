// A handler on the Node SDK that makes the `secret` and `token` calls given as JSON on argv (a
// list of [method, argument]) once connected, and prints one JSON line per call: {"ok": value}
// or {"code": the CallError's code}. SKIFF_SOCKET names skiff's socket.
import { CallError, Handler } from '../../handler-protocol/node/index.js';

const calls = JSON.parse(process.argv[2]);
const app = new Handler({ name: 'vault-calls', capacity: 1, logger: { info() {}, warn() {}, error() {} } });
app.job('vault-calls', async () => ({}));
app.run().catch(() => {});
const deadline = Date.now() + 30000;
for (const [method, arg] of calls) {
  let out;
  for (;;) {
    try {
      out = { ok: await app[method](arg) };
    } catch (e) {
      if (!(e instanceof CallError)) throw e;
      if (e.code === 'closed' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      out = { code: e.code, message: e.message };
    }
    break;
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
process.exit(0);
