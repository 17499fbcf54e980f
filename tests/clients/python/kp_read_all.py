"""Prints every record of a topic with kafka-python (no group, assigned
partitions, from the beginning to the end offsets at the start, which
under read_committed are the last stable offsets).

usage: kp_read_all.py BOOTSTRAP TOPIC [--isolation read_committed|read_uncommitted]
output: {"partitions": {"0": [[offset, key, value], ...], ...}}
"""

import argparse
import time

from kafka import KafkaConsumer, TopicPartition

from common import Failure, run

STEP_TIMEOUT_S = 30.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument(
        "--isolation", choices=["read_committed", "read_uncommitted"], default="read_committed"
    )
    args = parser.parse_args()
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        isolation_level=args.isolation,
        enable_auto_commit=False,
        consumer_timeout_ms=200,
    )
    try:
        partitions = consumer.partitions_for_topic(args.topic)
        if not partitions:
            raise Failure(f"topic {args.topic} has no partitions in metadata")
        assigned = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records = {str(tp.partition): [] for tp in assigned}
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise Failure(f"reading {args.topic} to {ends}: timed out")
            for message in consumer:
                records[str(message.partition)].append(
                    [
                        message.offset,
                        message.key.decode() if message.key is not None else None,
                        message.value.decode() if message.value is not None else None,
                    ]
                )
        return {"partitions": records}
    finally:
        consumer.close()


if __name__ == "__main__":
    run(main)
