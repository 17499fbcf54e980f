// Authenticates with SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), produces
// three records to TOPIC and reads them back in a consumer group. With
// CA_FILE, over TLS (SASL_SSL) trusting the certificates in it.
//
// usage: node kafkajs_sasl.js BOOTSTRAP MECHANISM USER PASSWORD TOPIC [CA_FILE]
// output: {"consumed": ["one", "two", "three"]}
// Failures print "error: ..." on stderr and exit 1.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const crypto = require('crypto');
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const TIMEOUT_MS = 30000;

async function main() {
  const [bootstrap, mechanism, username, password, topic, caFile] = process.argv.slice(2);
  const kafka = new Kafka({
    clientId: 'sasl-test',
    brokers: [bootstrap],
    ssl: caFile ? { ca: [fs.readFileSync(caFile)] } : false,
    logLevel: logLevel.NOTHING,
    sasl: { mechanism: mechanism.toLowerCase(), username, password },
    retry: { retries: 0 },
  });
  const producer = kafka.producer();
  await producer.connect();
  const values = ['one', 'two', 'three'];
  await producer.send({ topic, messages: values.map((value) => ({ value })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `sasl-${crypto.randomUUID()}` });
  await consumer.connect();
  const consumed = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone;
    const done = new Promise((resolve) => { resolveDone = resolve; });
    await consumer.run({
      eachMessage: async ({ message }) => {
        consumed.push(message.value.toString());
        if (consumed.length >= values.length) resolveDone();
      },
    });
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`only ${consumed.length} records in ${TIMEOUT_MS} ms`)), TIMEOUT_MS));
    await Promise.race([done, timeout]);
  } finally {
    await consumer.disconnect();
  }
  console.log(JSON.stringify({ consumed }));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  },
);
