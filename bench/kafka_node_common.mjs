// What the Node processes of bench/kafka_bench.py share: the tally of the records seen and
// the driver's line protocol, the same as bench/kafka_common.py (read its docstring):
//
//   ready                      printed once the imports are done
//   count  -> {"count": n, "assigned": partitions or null}
//   stats  -> {"count": n, "first_us": ..., "last_us": ..., "latency_us": [...]}
//   stop   -> {"stopping": true}, then onStop() (stdin closed: onStop() too)
//
// Latency: now - the produce time (epoch µs) in the header bench-produced-us, taken when the
// decoded record reaches the code that handles it; records without it are counted only.
import { createInterface } from 'node:readline';

export const PRODUCED_HEADER = 'bench-produced-us';

// Epoch µs with sub-millisecond resolution (Date.now() has only ms): the monotonic clock from
// an epoch origin taken once (process.hrtime() costs about half of performance.now() here).
const [s0, ns0] = process.hrtime();
const originUs = Math.round((performance.timeOrigin + performance.now()) * 1000)
  - (s0 * 1e6 + Math.floor(ns0 / 1000));
const nowUs = () => {
  const [s, ns] = process.hrtime();
  return originUs + s * 1e6 + Math.floor(ns / 1000);
};

export class Tally {
  count = 0;
  firstUs = null;
  lastUs = null;
  latencyUs = [];

  /** One record handled now; `produced`: its header's value (string, Buffer or undefined). */
  seen(produced) {
    const now = nowUs();
    this.count += 1;
    if (this.firstUs === null) this.firstUs = now;
    this.lastUs = now;
    if (produced !== undefined && produced !== null) {
      const us = Number(String(produced));
      if (Number.isFinite(us)) this.latencyUs.push(now - us);
    }
  }

  stats() {
    return {
      count: this.count, first_us: this.firstUs, last_us: this.lastUs, latency_us: this.latencyUs,
    };
  }
}

/** Answers the driver's commands read from stdin; `assigned()`: partitions owned or null. */
export function serveCommands(tally, { assigned = () => null, onStop = () => {} } = {}) {
  const reply = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  let stopped = false;
  const stop = () => {
    if (!stopped) {
      stopped = true;
      onStop();
    }
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'count') reply({ count: tally.count, assigned: assigned() });
    else if (cmd === 'stats') reply(tally.stats());
    else if (cmd === 'stop') {
      reply({ stopping: true });
      stop();
    } else if (cmd) reply({ error: `unknown command ${JSON.stringify(cmd)}` });
  });
  lines.on('close', stop); // the driver is gone
}
