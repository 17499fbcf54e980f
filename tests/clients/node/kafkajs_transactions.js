// kafkajs transactions: a transactional producer (producer.transaction(),
// send, commit/abort) writes four transactions across two topics and every
// partition of each: "c" committed, "a" aborted, "d" committed, "o" left
// open when the script exits. Then a read_committed consumer
// (readUncommitted: false) and a read_uncommitted one (readUncommitted:
// true), each in a group of its own, read both topics from the beginning.
//
// usage: node kafkajs_transactions.js BOOTSTRAP TOPIC_A TOPIC_B [PARTITIONS=3] [COUNT=5]
// Values are "<prefix>-<topic>-<partition>-<i>", COUNT per partition per
// transaction. The read_committed consumer reads until the last "d" value
// of every partition, the read_uncommitted one until the last "o" value;
// records of a partition arrive in offset order, so anything stored before
// that value (an aborted record, say) is read too.
// output: {"committed": {topic: {partition: [[offset, value], ...]}},
//          "uncommitted": {...}}
// Failures print "error: ..." on stderr and exit 1.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const crypto = require('crypto');
const { Kafka, logLevel } = require('kafkajs');

const STEP_TIMEOUT_MS = 30000;

const stderrLogger = () => ({ namespace, level, log }) => {
  if (level <= logLevel.WARN) {
    process.stderr.write(`kafkajs ${namespace}: ${log.message} ${log.error || ''}\n`);
  }
};

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms: ${what}`)),
      STEP_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function createTopics(kafka, topics, partitions) {
  const admin = kafka.admin();
  await withTimeout(admin.connect(), 'admin connect');
  try {
    await withTimeout(
      admin.createTopics({
        topics: topics.map((topic) => ({ topic, numPartitions: partitions })),
        waitForLeaders: true,
      }),
      'createTopics',
    );
  } finally {
    await admin.disconnect();
  }
}

function messages(prefix, topic, partitions, count) {
  const result = [];
  for (let partition = 0; partition < partitions; partition++) {
    for (let i = 0; i < count; i++) {
      result.push({ partition, value: `${prefix}-${topic}-${partition}-${i}` });
    }
  }
  return result;
}

// One transaction per [prefix, ending]; ending 'commit', 'abort' or null
// (left open).
async function produce(kafka, topics, partitions, count, plan) {
  const producer = kafka.producer({
    transactionalId: `kafkajs-${crypto.randomUUID()}`,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 60000,
  });
  await withTimeout(producer.connect(), 'producer connect');
  for (const [prefix, ending] of plan) {
    const transaction = await withTimeout(producer.transaction(), `begin ${prefix}`);
    for (const topic of topics) {
      await withTimeout(
        transaction.send({ topic, acks: -1, messages: messages(prefix, topic, partitions, count) }),
        `send ${prefix} to ${topic}`,
      );
    }
    if (ending === 'commit') await withTimeout(transaction.commit(), `commit ${prefix}`);
    if (ending === 'abort') await withTimeout(transaction.abort(), `abort ${prefix}`);
  }
  // The producer is not disconnected: the last transaction ("o") must
  // still be open when the script exits, for the test to see it open.
}

// Reads `topics` from the beginning until every partition's last value is
// its `lastPrefix` value number COUNT - 1.
async function consume(kafka, topics, partitions, count, readUncommitted, lastPrefix) {
  const consumer = kafka.consumer({
    groupId: `kafkajs-read-${crypto.randomUUID()}`,
    readUncommitted,
    heartbeatInterval: 500,
  });
  await withTimeout(consumer.connect(), 'consumer connect');
  const read = {};
  for (const topic of topics) {
    read[topic] = {};
    for (let partition = 0; partition < partitions; partition++) read[topic][partition] = [];
  }
  const finished = () =>
    topics.every((topic) =>
      Object.entries(read[topic]).every(([partition, rows]) => {
        const last = rows[rows.length - 1];
        return last && last[1] === `${lastPrefix}-${topic}-${partition}-${count - 1}`;
      }),
    );
  try {
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
    const everything = new Promise((resolve, reject) => {
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        reject(new Error(`consumer crashed: ${payload.error && payload.error.stack}`));
      });
      consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            read[topic][partition].push([Number(message.offset), message.value.toString()]);
            if (finished()) resolve();
          },
        })
        .catch(reject);
    });
    const isolation = readUncommitted ? 'read_uncommitted' : 'read_committed';
    await withTimeout(everything, `${isolation}: the last "${lastPrefix}" values (${JSON.stringify(read)})`);
  } finally {
    await consumer.disconnect();
  }
  return read;
}

async function main() {
  const [bootstrap, topicA, topicB, partitionsArg, countArg] = process.argv.slice(2);
  if (!bootstrap || !topicA || !topicB) {
    throw new Error('usage: kafkajs_transactions.js BOOTSTRAP TOPIC_A TOPIC_B [PARTITIONS] [COUNT]');
  }
  const topics = [topicA, topicB];
  const partitions = Number(partitionsArg || 3);
  const count = Number(countArg || 5);
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-transactions',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 5 },
  });
  await createTopics(kafka, topics, partitions);
  await produce(kafka, topics, partitions, count, [
    ['c', 'commit'],
    ['a', 'abort'],
    ['d', 'commit'],
    ['o', null],
  ]);
  const [committed, uncommitted] = await Promise.all([
    consume(kafka, topics, partitions, count, false, 'd'),
    consume(kafka, topics, partitions, count, true, 'o'),
  ]);
  return { committed, uncommitted };
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error) => {
    process.stderr.write(`error: ${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
  },
);
