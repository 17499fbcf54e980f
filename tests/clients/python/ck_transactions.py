"""confluent-kafka (librdkafka) transactions: a transactional producer
commits one transaction, aborts one, commits a third and leaves a fourth
open, across two topics and several partitions; a read_committed and a
read_uncommitted consumer read everything back and report the watermarks
they see while the fourth is open and after it is aborted.

usage: ck_transactions.py BOOTSTRAP TOPIC_A TOPIC_B [--partitions 3] [--count 10]
  Creates both topics. Every transaction sends COUNT values
  "<prefix>-<topic>-<p>-<i>" to every partition of both topics: "c"
  (committed), "a" (aborted), "d" (committed), "o" (left open while the
  consumers read, then aborted).
  The read_committed consumer reads until the last "d" value of every
  partition, the read_uncommitted one until the last "o" value.
  output: {"committed": {topic: {p: [[offset, value], ...]}},
           "uncommitted": {...},
           "watermarks_open": {"read_committed": {topic: {p: [low, high]}},
                               "read_uncommitted": {...}},
           "watermarks_ended": {...the same after the abort...}}
"""

import argparse
import uuid

from confluent_kafka import Producer

from common import (
    STEP_TIMEOUT_S,
    Failure,
    by_topic,
    create_topic,
    isolated_consumer,
    read_until_last,
    run,
    watermarks,
)


def send(producer, topics, partitions, count, prefix):
    """Sends the prefix's values and waits until every one is delivered."""
    failures = []

    def report(error, _message):
        if error is not None:
            failures.append(str(error))

    for topic in topics:
        for p in range(partitions):
            for i in range(count):
                producer.produce(
                    topic, value=f"{prefix}-{topic}-{p}-{i}", partition=p, on_delivery=report
                )
    left = producer.flush(STEP_TIMEOUT_S)
    if left or failures:
        raise Failure(f"transaction {prefix}: {left} undelivered, failures {failures[:5]}")


def last_values(topics, partitions, count, prefix):
    return {(t, p): f"{prefix}-{t}-{p}-{count - 1}" for t in topics for p in range(partitions)}


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
    for prefix, commit in [("c", True), ("a", False), ("d", True), ("o", None)]:
        producer.begin_transaction()
        send(producer, topics, args.partitions, args.count, prefix)
        if commit is True:
            producer.commit_transaction(STEP_TIMEOUT_S)
        elif commit is False:
            producer.abort_transaction(STEP_TIMEOUT_S)

    committed = isolated_consumer(args.bootstrap, "read_committed")
    uncommitted = isolated_consumer(args.bootstrap, "read_uncommitted")
    keys = list(last_values(topics, args.partitions, args.count, "d"))
    read_committed = read_until_last(
        committed, last_values(topics, args.partitions, args.count, "d")
    )
    read_uncommitted = read_until_last(
        uncommitted, last_values(topics, args.partitions, args.count, "o")
    )
    committed.close()
    uncommitted.close()
    watermarks_open = {
        isolation: watermarks(args.bootstrap, isolation, keys)
        for isolation in ["read_committed", "read_uncommitted"]
    }
    producer.abort_transaction(STEP_TIMEOUT_S)
    watermarks_ended = {
        isolation: watermarks(args.bootstrap, isolation, keys)
        for isolation in ["read_committed", "read_uncommitted"]
    }
    return {
        "committed": by_topic(read_committed),
        "uncommitted": by_topic(read_uncommitted),
        "watermarks_open": watermarks_open,
        "watermarks_ended": watermarks_ended,
    }


if __name__ == "__main__":
    run(main)
