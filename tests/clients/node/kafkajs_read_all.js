// Reads a topic with a read_committed kafkajs consumer in a group of its
// own, from the beginning, until COUNT records have arrived. (A duplicate
// among them shows as a missing record: the caller compares sets.)
//
// usage: node kafkajs_read_all.js BOOTSTRAP TOPIC COUNT
// output: {"records": [[partition, offset, key, value], ...]}
// Failures print "error: ..." on stderr and exit 1.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const crypto = require('crypto');
const { Kafka, logLevel } = require('kafkajs');

const TIMEOUT_MS = 30000;

async function main() {
  const [bootstrap, topic, countText] = process.argv.slice(2);
  const count = Number(countText);
  const kafka = new Kafka({ clientId: 'read-all', brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId: `read-all-${crypto.randomUUID()}`,
    readUncommitted: false,
  });
  const records = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone;
    const done = new Promise((resolve) => { resolveDone = resolve; });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        records.push([
          partition,
          Number(message.offset),
          message.key === null ? null : message.key.toString(),
          message.value === null ? null : message.value.toString(),
        ]);
        if (records.length >= count) resolveDone();
      },
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out with ${records.length} of ${count} records`)), TIMEOUT_MS);
    });
    await Promise.race([done, timeout]).finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
  process.stdout.write(JSON.stringify({ records }) + '\n');
}

main().catch((error) => {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
});
