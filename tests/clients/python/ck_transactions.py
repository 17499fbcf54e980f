"""confluent-kafka (librdkafka) transactions: a transactional producer
commits one transaction and aborts another, across two topics and several
partitions; then a read_committed and a read_uncommitted consumer read
everything back.

usage: ck_transactions.py BOOTSTRAP TOPIC_A TOPIC_B [--partitions 3] [--count 10]
  Creates both topics. Transaction 1 (committed) sends "c-<topic>-<p>-<i>"
  to every partition of both topics; transaction 2 (aborted) sends
  "a-<topic>-<p>-<i>"; transaction 3 (committed) sends "d-...".
  output: {"committed": {topic: [values in partition, offset order]},
           "uncommitted": {...}, "end_offsets": {topic: {p: [low, high]}},
           "committed_end_offsets": {topic: {p: high}}}
"""

import argparse
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import STEP_TIMEOUT_S, Deadline, Failure, create_topic, run


def transaction(producer, topics, partitions, count, prefix, commit):
    producer.begin_transaction()
    for topic in topics:
        for p in range(partitions):
            for i in range(count):
                producer.produce(topic, value=f"{prefix}-{topic}-{p}-{i}", partition=p)
    producer.flush(STEP_TIMEOUT_S)
    if commit:
        producer.commit_transaction(STEP_TIMEOUT_S)
    else:
        producer.abort_transaction(STEP_TIMEOUT_S)


def read(bootstrap, topics, partitions, isolation, expected):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
    values = {t: {p: [] for p in range(partitions)} for t in topics}
    seen = 0
    deadline = Deadline(STEP_TIMEOUT_S)
    # Read until `expected` records arrived, then a little longer to catch
    # records that should not be there.
    quiet_polls = 0
    while quiet_polls < 10:
        deadline.check(f"{isolation} consumer to read {expected} records (read {seen})")
        message = consumer.poll(0.2)
        if message is None:
            if seen >= expected:
                quiet_polls += 1
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise Failure(f"consume: {message.error()}")
        values[message.topic()][message.partition()].append(message.value().decode())
        seen += 1
    high = {}
    for t in topics:
        high[t] = {}
        for p in range(partitions):
            low, hi = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            high[t][str(p)] = [low, hi]
    consumer.close()
    flat = {t: [v for p in range(partitions) for v in values[t][p]] for t in topics}
    return flat, high


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic_a")
    parser.add_argument("topic_b")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    topics = [args.topic_a, args.topic_b]
    for topic in topics:
        create_topic(args.bootstrap, topic, args.partitions)
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": f"ck-{uuid.uuid4()}",
            "transaction.timeout.ms": 60000,
        }
    )
    producer.init_transactions(STEP_TIMEOUT_S)
    transaction(producer, topics, args.partitions, args.count, "c", True)
    transaction(producer, topics, args.partitions, args.count, "a", False)
    transaction(producer, topics, args.partitions, args.count, "d", True)
    per_txn = len(topics) * args.partitions * args.count
    committed, _ = read(args.bootstrap, topics, args.partitions, "read_committed", 2 * per_txn)
    uncommitted, end_offsets = read(
        args.bootstrap, topics, args.partitions, "read_uncommitted", 3 * per_txn
    )
    return {"committed": committed, "uncommitted": uncommitted, "end_offsets": end_offsets}


if __name__ == "__main__":
    run(main)
