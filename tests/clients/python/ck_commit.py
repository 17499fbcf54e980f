"""confluent-kafka: produce a topic, then consume part of it in a group and
commit synchronously, so a test can check where the next consumer resumes.

usage: ck_commit.py produce BOOTSTRAP TOPIC [--partitions 3] [--count 20]
  Creates TOPIC and sends COUNT values "<partition>-<i>" to every partition.
  output: {"offsets": {partition: [offsets]}}

usage: ck_commit.py consume BOOTSTRAP TOPIC GROUP --per-partition K [--partitions 3]
  First reads GROUP's committed offsets (OffsetFetch). Then joins GROUP
  (auto commit off, auto.offset.reset=earliest) and takes the next K records
  of every partition (K = 0: everything up to the end); records beyond K are
  ignored. Commits offset last + 1 of every partition it took records from
  (synchronous commit), then reads the committed offsets back.
  output: {"committed_before": {partition: offset or null},
           "first": {partition: offset}, "last": {partition: offset},
           "values": {partition: [values]}, "committed_after": {...}}
"""

import argparse

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import STEP_TIMEOUT_S, Deadline, Failure, create_topic, run


def produce(args):
    create_topic(args.bootstrap, args.topic, args.partitions)
    offsets = {str(p): [] for p in range(args.partitions)}
    failed = []

    def report(error, message):
        if error is not None:
            failed.append(str(error))
        else:
            offsets[str(message.partition())].append(message.offset())

    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all"})
    for partition in range(args.partitions):
        for i in range(args.count):
            producer.produce(
                args.topic, value=f"{partition}-{i}", partition=partition, on_delivery=report
            )
    left = producer.flush(STEP_TIMEOUT_S)
    if left or failed:
        raise Failure(f"produce: {left} undelivered, failures {failed[:5]}")
    return {"offsets": offsets}


def committed(consumer, topic, partitions):
    """{partition: committed offset, or None when the group has none}."""
    asked = [TopicPartition(topic, p) for p in range(partitions)]
    answer = consumer.committed(asked, timeout=STEP_TIMEOUT_S)
    result = {}
    for tp in answer:
        if tp.error is not None:
            raise Failure(f"committed offset of {topic} [{tp.partition}]: {tp.error}")
        result[str(tp.partition)] = tp.offset if tp.offset >= 0 else None
    return result


def consume(args):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    try:
        before = committed(consumer, args.topic, args.partitions)
        first, last, values = {}, {}, {}
        done = set()
        consumer.subscribe([args.topic])
        deadline = Deadline(STEP_TIMEOUT_S)
        while len(done) < args.partitions:
            deadline.check(f"records of every partition (have {len(values)} partitions, done {done})")
            message = consumer.poll(0.2)
            if message is None:
                continue
            partition = str(message.partition())
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise Failure(f"consume [{partition}]: {message.error()}")
                done.add(partition)  # end of the partition
                continue
            if partition in done:
                continue
            first.setdefault(partition, message.offset())
            last[partition] = message.offset()
            values.setdefault(partition, []).append(message.value().decode("utf-8"))
            if args.per_partition and len(values[partition]) >= args.per_partition:
                done.add(partition)
        offsets = [TopicPartition(args.topic, int(p), o + 1) for p, o in last.items()]
        if offsets:
            for tp in consumer.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    raise Failure(f"commit {args.topic} [{tp.partition}]: {tp.error}")
        after = committed(consumer, args.topic, args.partitions)
    finally:
        consumer.close()
    return {
        "committed_before": before,
        "first": first,
        "last": last,
        "values": values,
        "committed_after": after,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    producing = commands.add_parser("produce")
    producing.add_argument("bootstrap")
    producing.add_argument("topic")
    producing.add_argument("--partitions", type=int, default=3)
    producing.add_argument("--count", type=int, default=20)
    consuming = commands.add_parser("consume")
    consuming.add_argument("bootstrap")
    consuming.add_argument("topic")
    consuming.add_argument("group")
    consuming.add_argument("--partitions", type=int, default=3)
    consuming.add_argument("--per-partition", type=int, required=True)
    args = parser.parse_args()
    return produce(args) if args.command == "produce" else consume(args)


if __name__ == "__main__":
    run(main)
