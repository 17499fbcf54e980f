"""confluent-kafka (librdkafka) zombie fencing: two producers with one
transactional.id. The first (the zombie) begins a transaction and has its
records delivered; the second calls init_transactions, which fences the
first and aborts its open transaction, then commits a transaction of its
own. The zombie then tries to go on: with --then produce it produces
again (the broker refuses its Produce) and tries to commit; with --then
commit it tries to commit at once (the broker refuses its EndTxn).

usage: ck_zombie.py BOOTSTRAP TOPIC --then produce|commit [--partitions 2] [--count 5]
  Creates TOPIC. Values: "zombie-before-<p>-<i>", "fencer-<p>-<i>",
  "zombie-after-<p>-<i>" (--then produce), COUNT of each to every partition.
  output: {"zombie_before_delivered": n,
           "zombie_after": {"produce_errors": [error names produce() raised],
                            "delivery_errors": [error names in reports],
                            "flush_error": error name flush() raised, or null,
                            "commit_error": {"name", "code", "fatal",
                                             "retriable", "txn_requires_abort"}
                                            or null (the commit succeeded)},
           "committed": {p: [[offset, value], ...]}}  (read_committed, until
           the last "fencer" value of every partition)
"""

import argparse
import uuid

from confluent_kafka import KafkaException, Producer

from common import (
    STEP_TIMEOUT_S,
    Failure,
    create_topic,
    isolated_consumer,
    read_until_last,
    run,
)


def transactional_producer(bootstrap, transactional_id):
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 60000,
        }
    )
    producer.init_transactions(STEP_TIMEOUT_S)
    return producer


def send(producer, topic, partitions, count, prefix):
    """Produces the prefix's values and flushes. Returns the names of the
    errors produce() raised (one per value it refused), of the errors in
    delivery reports, of the error flush() raised (or None), and how many
    values were delivered."""
    produce_errors, delivery_errors, delivered = [], [], []

    def report(error, _message):
        if error is None:
            delivered.append(1)
        else:
            delivery_errors.append(error.name())

    for p in range(partitions):
        for i in range(count):
            try:
                producer.produce(topic, value=f"{prefix}-{p}-{i}", partition=p, on_delivery=report)
            except KafkaException as error:
                produce_errors.append(error.args[0].name())
    flush_error = None
    try:
        producer.flush(STEP_TIMEOUT_S)
    except KafkaException as error:
        flush_error = error.args[0].name()
    return produce_errors, delivery_errors, flush_error, len(delivered)


def describe(error):
    return {
        "name": error.name(),
        "code": error.code(),
        "fatal": error.fatal(),
        "retriable": error.retriable(),
        "txn_requires_abort": error.txn_requires_abort(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--then", choices=["produce", "commit"], required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    create_topic(args.bootstrap, args.topic, args.partitions)
    transactional_id = f"zombie-{uuid.uuid4()}"

    zombie = transactional_producer(args.bootstrap, transactional_id)
    zombie.begin_transaction()
    *errors, before = send(zombie, args.topic, args.partitions, args.count, "zombie-before")
    if before != args.partitions * args.count:
        raise Failure(f"the zombie's first records: {errors}, {before} delivered")

    fencer = transactional_producer(args.bootstrap, transactional_id)
    fencer.begin_transaction()
    *errors, delivered = send(fencer, args.topic, args.partitions, args.count, "fencer")
    if delivered != args.partitions * args.count:
        raise Failure(f"the fencer's records: {errors}, {delivered} delivered")
    fencer.commit_transaction(STEP_TIMEOUT_S)

    produce_errors, delivery_errors, flush_error = [], [], None
    if args.then == "produce":
        produce_errors, delivery_errors, flush_error, _ = send(
            zombie, args.topic, args.partitions, args.count, "zombie-after"
        )
    try:
        zombie.commit_transaction(STEP_TIMEOUT_S)
        commit_error = None
    except KafkaException as error:
        commit_error = describe(error.args[0])

    consumer = isolated_consumer(args.bootstrap, "read_committed")
    last = {
        (args.topic, p): f"fencer-{p}-{args.count - 1}" for p in range(args.partitions)
    }
    committed = read_until_last(consumer, last)
    consumer.close()
    return {
        "zombie_before_delivered": before,
        "zombie_after": {
            "produce_errors": produce_errors,
            "delivery_errors": delivery_errors,
            "flush_error": flush_error,
            "commit_error": commit_error,
        },
        "committed": {str(p): rows for (_, p), rows in committed.items()},
    }


if __name__ == "__main__":
    run(main)
