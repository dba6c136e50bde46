// Instance creator for the bench (not measured): deploys BPMN files and creates process
// instances over gRPC with the official Camunda 8 Node SDK, `concurrency` requests in flight.
//
//   node bench/creator.mjs --address 127.0.0.1:26700 --deploy a.bpmn[,b.bpmn]
//   node bench/creator.mjs --address 127.0.0.1:26700 --process p --count 2000 --concurrency 32 [--rate R]
//   node bench/creator.mjs --address 127.0.0.1:26700 --process p1,p2,p3 --count 3
//
// With several process ids, instance i is of process i modulo their number.
// With --rate, instance i is requested at start + i/R seconds (open loop, still at most
// `concurrency` in flight); without it (or 0), as fast as the broker answers.
// Prints one line: RESULT {"created": N, "seconds": S, "retries": R}. A request the broker
// rejects (back pressure, RESOURCE_EXHAUSTED) is retried after a short pause.
import { args, zeebeClient } from './c8.mjs';

const a = args();
const zbc = zeebeClient(a.address);
const t0 = performance.now();

if (a.deploy) {
  for (const file of a.deploy.split(',')) await zbc.deployResource({ processFilename: file });
  console.log('RESULT ' + JSON.stringify({ deployed: a.deploy.split(',').length, seconds: (performance.now() - t0) / 1000 }));
} else {
  const count = Number(a.count);
  const concurrency = Number(a.concurrency ?? 32);
  const rate = Number(a.rate ?? 0);
  const processes = a.process.split(',');
  let next = 0;
  let created = 0;
  let retries = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      if (rate > 0) {
        const wait = t0 + (i * 1000) / rate - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      for (let attempt = 0; ; attempt++) {
        try {
          await zbc.createProcessInstance({ bpmnProcessId: processes[i % processes.length], variables: { n: i } });
          created++;
          break;
        } catch (e) {
          if (attempt >= 50) throw e;
          retries++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  console.log('RESULT ' + JSON.stringify({ created, seconds: (performance.now() - t0) / 1000, retries }));
}
process.exit(0);
