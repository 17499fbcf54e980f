"""kafka-python: produce, consume in a group, commit, read the commit back.

usage: kp_group_commit.py BOOTSTRAP TOPIC GROUP [--partitions 3] [--count 30]
Creates TOPIC (admin client), sends COUNT values "kp-<i>" to partition
i % PARTITIONS (acks=all, waiting for each result), consumes them all as
GROUP (auto commit off), commits (synchronous), then asks committed() of
the same consumer and of a fresh consumer in GROUP.
output: {"produced": {partition: [[offset, value]]},
         "consumed": {partition: [[offset, value]]},
         "positions": {partition: offset},
         "committed": {partition: offset}, "committed_fresh": {partition: offset}}
"""

import argparse

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from common import STEP_TIMEOUT_S, Deadline, Failure, run

TIMEOUT_MS = int(STEP_TIMEOUT_S * 1000)


def produce(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        admin.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
            timeout_ms=TIMEOUT_MS,
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    produced = {str(p): [] for p in range(args.partitions)}
    try:
        for i in range(args.count):
            value = f"kp-{i}"
            future = producer.send(args.topic, value=value.encode(), partition=i % args.partitions)
            metadata = future.get(timeout=STEP_TIMEOUT_S)
            produced[str(metadata.partition)].append([metadata.offset, value])
    finally:
        producer.close(timeout=STEP_TIMEOUT_S)
    return produced


def committed_offsets(consumer, args):
    result = {}
    for p in range(args.partitions):
        offset = consumer.committed(TopicPartition(args.topic, p), timeout_ms=TIMEOUT_MS)
        result[str(p)] = offset
    return result


def consume(args):
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        heartbeat_interval_ms=500,
    )
    consumed = {str(p): [] for p in range(args.partitions)}
    try:
        total = 0
        deadline = Deadline(STEP_TIMEOUT_S)
        while total < args.count:
            deadline.check(f"{args.count} records (have {total})")
            batches = consumer.poll(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    consumed[str(tp.partition)].append([record.offset, record.value.decode()])
                    total += 1
        positions = {
            str(tp.partition): consumer.position(tp, timeout_ms=TIMEOUT_MS)
            for tp in consumer.assignment()
        }
        consumer.commit(timeout_ms=TIMEOUT_MS)
        committed = committed_offsets(consumer, args)
    finally:
        consumer.close(autocommit=False)
    return consumed, positions, committed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()

    produced = produce(args)
    consumed, positions, committed = consume(args)
    fresh = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group)
    try:
        committed_fresh = committed_offsets(fresh, args)
    finally:
        fresh.close(autocommit=False)
    if None in committed.values():
        raise Failure(f"committed() returned None for some partition: {committed}")
    return {
        "produced": produced,
        "consumed": consumed,
        "positions": positions,
        "committed": committed,
        "committed_fresh": committed_fresh,
    }


if __name__ == "__main__":
    run(main)
