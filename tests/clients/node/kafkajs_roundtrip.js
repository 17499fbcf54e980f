// kafkajs: admin createTopics, produce to explicit partitions, then a
// consumer group reading from the beginning.
//
// usage: node kafkajs_roundtrip.js BOOTSTRAP TOPIC GROUP [PARTITIONS=3] [PER_PARTITION=10]
// Creates TOPIC with PARTITIONS partitions; sends PER_PARTITION values
// "<partition>-<i>" (key "k<i>") to every partition, one send() per
// partition; then a consumer in GROUP (fromBeginning) runs until it has
// seen PARTITIONS * PER_PARTITION records (or the deadline passes).
// output: {"created": bool, "metadata": {partition: leader},
//          "produced": {partition: [values]}, "sent_offsets": {partition: base offset},
//          "consumed": {partition: [[offset, key, value]]}}
// Failures print "error: ..." on stderr and exit 1.
'use strict';

// Partitions are always explicit here; the v2 partitioner notice is noise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

// Every step (connect, create, send, consume everything) gets this long.
const STEP_TIMEOUT_MS = 30000;

// kafkajs logs to the console by default; stdout is reserved for the JSON.
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

async function createTopic(kafka, topic, partitions) {
  const admin = kafka.admin();
  await withTimeout(admin.connect(), 'admin connect');
  try {
    const created = await withTimeout(
      admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true }),
      'createTopics',
    );
    const described = await withTimeout(admin.fetchTopicMetadata({ topics: [topic] }), 'metadata');
    const metadata = {};
    for (const partition of described.topics[0].partitions) {
      metadata[partition.partitionId] = partition.leader;
    }
    return { created, metadata };
  } finally {
    await admin.disconnect();
  }
}

async function produce(kafka, topic, partitions, perPartition) {
  const producer = kafka.producer();
  await withTimeout(producer.connect(), 'producer connect');
  const produced = {};
  const sentOffsets = {};
  try {
    for (let partition = 0; partition < partitions; partition++) {
      const values = [];
      for (let i = 0; i < perPartition; i++) values.push(`${partition}-${i}`);
      produced[partition] = values;
      const results = await withTimeout(
        producer.send({
          topic,
          acks: -1,
          messages: values.map((value, i) => ({ partition, key: `k${i}`, value })),
        }),
        `send to partition ${partition}`,
      );
      for (const result of results) {
        if (result.errorCode !== 0) {
          throw new Error(`send to ${topic} [${result.partition}]: error ${result.errorCode}`);
        }
        sentOffsets[result.partition] = Number(result.baseOffset);
      }
    }
  } finally {
    await producer.disconnect();
  }
  return { produced, sentOffsets };
}

async function consume(kafka, topic, group, expected) {
  const consumer = kafka.consumer({ groupId: group, heartbeatInterval: 500 });
  await withTimeout(consumer.connect(), 'consumer connect');
  const consumed = {};
  let count = 0;
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    const everything = new Promise((resolve, reject) => {
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        reject(new Error(`consumer crashed: ${payload.error && payload.error.stack}`));
      });
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          (consumed[partition] ||= []).push([
            Number(message.offset),
            message.key && message.key.toString(),
            message.value.toString(),
          ]);
          count += 1;
          if (count >= expected) resolve();
        },
      }).catch(reject);
    });
    await withTimeout(everything, `consuming ${expected} records (have ${count})`);
  } finally {
    await consumer.disconnect();
  }
  return consumed;
}

async function main() {
  const [bootstrap, topic, group, partitionsArg, perPartitionArg] = process.argv.slice(2);
  if (!bootstrap || !topic || !group) {
    throw new Error('usage: kafkajs_roundtrip.js BOOTSTRAP TOPIC GROUP [PARTITIONS] [PER_PARTITION]');
  }
  const partitions = Number(partitionsArg || 3);
  const perPartition = Number(perPartitionArg || 10);
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-test',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 5 },
  });
  const { created, metadata } = await createTopic(kafka, topic, partitions);
  const { produced, sentOffsets } = await produce(kafka, topic, partitions, perPartition);
  const consumed = await consume(kafka, topic, group, partitions * perPartition);
  return { created, metadata, produced, sent_offsets: sentOffsets, consumed };
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
