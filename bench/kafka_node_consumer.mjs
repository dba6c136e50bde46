// The Node peer of the Kafka benchmark: a kafkajs Consumer with the registry's schema by id
// (@kafkajs/confluent-schema-registry, which decodes with avsc), doing the same trivial work
// per record as the skiff handler (bench/kafka_node_handler.mjs): decode to an object, touch a
// field, note it.
//
//   node bench/kafka_node_consumer.mjs --bootstrap H:P --registry URL --topic T --group G
//        [--commit-every N] [--each message|batch]
//
// As kafkajs' documentation introduces it: `eachMessage` (the default here) hands over one
// record at a time and resolves its offset when the function returns; `--each batch` uses
// `eachBatch` (the "advanced" handler: a fetched batch at once, `resolveOffset()` per record
// and `heartbeat()` per batch, as in its example). Both with `autoCommitThreshold` N (1000):
// kafkajs commits the resolved offsets every N records (and on `autoCommitInterval`, 5 s),
// like the Python peer's commit every N records. `registry.decode()` reads the schema id after
// the magic byte, fetches the writer's schema once (cached) and decodes with avsc.
//
// The bench writes its records zstd-compressed; kafkajs has no zstd codec of its own: it gets
// one as its documentation says (CompressionCodecs), here @bokuweb/zstd-wasm (zstd compiled to
// WebAssembly, shipped in the npm package: no native build).
//
// Started and queried by bench/kafka_bench.py over stdin/stdout (bench/kafka_node_common.mjs);
// `stop` (or SIGTERM) disconnects the consumer (kafkajs commits what was resolved) and exits.
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs'; // CommonJS: its codec table is not a named export
import * as zstd from '@bokuweb/zstd-wasm';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { PRODUCED_HEADER, Tally, serveCommands } from './kafka_node_common.mjs';

const { values: args } = parseArgs({
  options: {
    bootstrap: { type: 'string' },
    registry: { type: 'string' },
    topic: { type: 'string' },
    group: { type: 'string' },
    'commit-every': { type: 'string', default: '1000' },
    each: { type: 'string', default: 'message' },
  },
});
for (const need of ['bootstrap', 'registry', 'topic', 'group']) {
  if (!args[need]) throw new Error(`--${need} is required`);
}
if (!['message', 'batch'].includes(args.each)) throw new Error('--each: message or batch');

const {
  CompressionCodecs, CompressionTypes, Kafka, logLevel,
} = kafkajs;
await zstd.init();
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async (encoder) => Buffer.from(zstd.compress(encoder.buffer, 3)),
  decompress: async (buffer) => Buffer.from(zstd.decompress(buffer)),
});

const tally = new Tally();
const kafka = new Kafka({
  clientId: 'bench-kafka-node', brokers: args.bootstrap.split(','), logLevel: logLevel.ERROR,
});
const consumer = kafka.consumer({ groupId: args.group });
const registry = new SchemaRegistry({ host: args.registry });
let assigned = 0;
consumer.on(consumer.events.GROUP_JOIN, (e) => {
  assigned = Object.values(e.payload.memberAssignment).reduce((n, ps) => n + ps.length, 0);
});

let stopping = null;
const stop = () => {
  stopping ??= consumer.disconnect().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);

async function handle(message) {
  const value = await registry.decode(message.value);
  void value.order_id; // the decoded record, an object
  tally.seen(message.headers?.[PRODUCED_HEADER]);
}

await consumer.connect();
await consumer.subscribe({ topic: args.topic, fromBeginning: true });
serveCommands(tally, { assigned: () => assigned, onStop: stop });
console.log('ready');
const commit = { autoCommit: true, autoCommitThreshold: Number(args['commit-every']) };
if (args.each === 'message') {
  await consumer.run({ ...commit, eachMessage: ({ message }) => handle(message) });
} else {
  await consumer.run({
    ...commit,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      for (const message of batch.messages) {
        if (!isRunning() || isStale()) break;
        await handle(message);
        resolveOffset(message.offset);
      }
      await heartbeat();
    },
  });
}
