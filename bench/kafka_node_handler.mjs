// skiff contender (Kafka, Node): a handler written with skiff's Node SDK
// (handler-protocol/node) that acks every record, the Node twin of bench/kafka_py_handler.py.
//
// skiff decodes each Avro record and hands it over as a task; the SDK parses the task frame
// (task.value is the record as an object) and runs the topic function; resolving acks it. The
// function touches one field of the value and notes the record (bench/kafka_node_common.mjs:
// count, latency from the produce-time header), the same trivial work as the peer
// (bench/kafka_node_consumer.mjs).
//
// Environment: SKIFF_SOCKET (read by the SDK), TOPICS (comma-separated), CAPACITY (64),
// NODE_SDK (the SDK's index.js to import, default handler-protocol/node/index.js: another
// version of the SDK, e.g. a checkout of an earlier commit, for runs that compare the two).
// Started and queried by bench/kafka_bench.py over stdin/stdout; `stop` is a no-op here: the
// handler leaves when skiff drains it (or on SIGTERM).
import { pathToFileURL } from 'node:url';
import { PRODUCED_HEADER, Tally, serveCommands } from './kafka_node_common.mjs';

const { Handler } = await import(process.env.NODE_SDK
  ? pathToFileURL(process.env.NODE_SDK).href : '../handler-protocol/node/index.js');
const tally = new Tally();
const app = new Handler({ name: 'bench-kafka-node', capacity: Number(process.env.CAPACITY ?? 64) });

// A synchronous function: the SDK acks it without waiting for a promise.
function onRecord(task) {
  void task.value.order_id; // the decoded record, an object
  tally.seen(task.record.headers[PRODUCED_HEADER]);
}

for (const topic of process.env.TOPICS.split(',')) app.topic(topic, onRecord);
process.on('SIGTERM', () => process.exit(0));
serveCommands(tally);
console.log('ready');
await app.run();
process.exit(0);
