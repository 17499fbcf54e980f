"""confluent-kafka (librdkafka) exactly-once consume-transform-produce loop,
meant to be killed (it or the broker) with SIGKILL at any moment and
started again.

usage:
  ck_eos_loop.py seed BOOTSTRAP TOPIC --count N [--keys 10]
      Sends N records with keys "k0".."k<keys-1>" (round robin) and values
      "<key>-<seq>", seq counting 0, 1, 2, ... per key, with an idempotent
      producer (so per-key order holds), partitioned by key.
      output: {"produced": N}

  ck_eos_loop.py run BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID
                 [--batch 4] [--transaction-timeout-ms 8000] [--max-seconds 120]
      A transactional producer (TRANSACTIONAL_ID) and a read_committed
      consumer in GROUP (auto commit off; a static member, so a restarted
      copy takes over at once instead of waiting for the killed one's
      session to expire). Each transaction holds at most BATCH input
      records: each is sent to OUTPUT with the same key and its value
      uppercased, then the consumer's positions go into the transaction
      (send_offsets_to_transaction) and it commits. An abortable error
      aborts and rewinds the consumer to the group's committed offsets; a
      fatal one (fenced: the broker aborted a transaction open past its
      timeout) replaces the producer and rewinds. Exits 0 once the group's
      committed offsets reach the input's end offsets (read at start: the
      input is written before the loop starts).
      output: {"committed": transactions, "aborted": transactions,
               "records": input records committed by this process,
               "producers": producers created, "errors": {error: count}}
"""

import argparse
import os
import sys

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from common import STEP_TIMEOUT_S, Deadline, Failure, run

# Reconnect quickly once the broker is back on the same address. And no
# re-bootstrap when every known broker is down (which, with one broker, is
# every broker restart): re-bootstrapping decommissions the broker handles,
# and librdkafka 2.16 keeps a decommissioned handle as the cached group
# coordinator, so send_offsets_to_transaction then waits forever, past its
# timeout (confluentinc/librdkafka#5511, #5456). The broker comes back on
# the same address, so nothing is lost by not re-bootstrapping.
RECONNECT = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 300,
    "metadata.recovery.strategy": "none",
}

# librdkafka debug contexts to log (stderr) when investigating a failure,
# e.g. CK_EOS_LOOP_DEBUG=eos,protocol,cgrp.
DEBUG = {"debug": os.environ["CK_EOS_LOOP_DEBUG"]} if os.environ.get("CK_EOS_LOOP_DEBUG") else {}


def seed(args):
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "enable.idempotence": True, **RECONNECT}
    )
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    sequence = {}
    for i in range(args.count):
        key = f"k{i % args.keys}"
        seq = sequence.get(key, 0)
        sequence[key] = seq + 1
        producer.produce(args.topic, key=key, value=f"{key}-{seq}", on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(STEP_TIMEOUT_S)
    if left or failures:
        raise Failure(f"seeding {args.topic}: {left} undelivered, failures {failures[:5]}")
    return {"produced": args.count}


class Loop:
    """The consume-transform-produce loop and what it has counted."""

    def __init__(self, args):
        self.args = args
        self.stats = {"committed": 0, "aborted": 0, "records": 0, "producers": 0, "errors": {}}
        self.producer = self.new_producer()
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "group.instance.id": f"{args.group}-instance",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                **RECONNECT,
                **DEBUG,
            }
        )
        self.partitions = self.input_partitions()
        self.ends = {}
        for p in self.partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(args.input, p), timeout=STEP_TIMEOUT_S
            )
            self.ends[p] = high
        self.consumer.subscribe([args.input])

    def note(self, error):
        text = str(error)
        self.stats["errors"][text] = self.stats["errors"].get(text, 0) + 1
        print(f"loop: {text}", file=sys.stderr, flush=True)

    def new_producer(self):
        """A transactional producer, initialised: InitProducerId fences an
        earlier producer of the id and aborts its open transaction."""
        producer = Producer(
            {
                "bootstrap.servers": self.args.bootstrap,
                "transactional.id": self.args.transactional_id,
                "transaction.timeout.ms": self.args.transaction_timeout_ms,
                "linger.ms": 1,
                **RECONNECT,
                **DEBUG,
            }
        )
        deadline = Deadline(STEP_TIMEOUT_S)
        while True:
            try:
                producer.init_transactions(STEP_TIMEOUT_S)
                break
            except KafkaException as exception:
                error = exception.args[0]
                self.note(f"init_transactions: {error}")
                if not error.retriable() or deadline.passed():
                    raise
        self.stats["producers"] += 1
        return producer

    def input_partitions(self):
        metadata = self.consumer.list_topics(self.args.input, timeout=STEP_TIMEOUT_S)
        described = metadata.topics.get(self.args.input)
        if described is None or described.error is not None:
            raise Failure(f"input {self.args.input} not in metadata")
        return sorted(described.partitions)

    def done(self):
        """Whether the group's committed offsets reached the input's end."""
        wanted = [TopicPartition(self.args.input, p) for p in self.partitions]
        try:
            committed = self.consumer.committed(wanted, timeout=5)
        except KafkaException as exception:
            self.note(f"committed: {exception.args[0]}")
            return False
        return all(tp.offset >= self.ends[tp.partition] for tp in committed)

    def rewind(self):
        """Back to the committed offsets: what an aborted transaction
        consumed is consumed again."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        deadline = Deadline(STEP_TIMEOUT_S)
        while True:
            try:
                committed = self.consumer.committed(assignment, timeout=5)
                break
            except KafkaException as exception:
                self.note(f"committed (retried): {exception.args[0]}")
                deadline.check("the committed offsets to rewind to")
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def transaction(self, records):
        """One transaction over `records`; raises the client's error."""
        producer = self.producer
        producer.begin_transaction()
        for message in records:
            producer.produce(
                self.args.output, key=message.key(), value=message.value().decode().upper()
            )
        touched = sorted({message.partition() for message in records})
        positions = self.consumer.position(
            [TopicPartition(self.args.input, p) for p in touched]
        )
        producer.send_offsets_to_transaction(
            positions, self.consumer.consumer_group_metadata(), STEP_TIMEOUT_S
        )
        while True:
            try:
                producer.commit_transaction(STEP_TIMEOUT_S)
                return
            except KafkaException as exception:
                error = exception.args[0]
                if not error.retriable():
                    raise
                self.note(f"commit_transaction (retried): {error}")

    def recover(self, error):
        """After a failed transaction: abort it (or replace a fenced
        producer), then rewind the consumer."""
        self.note(f"transaction failed: {error}")
        deadline = Deadline(STEP_TIMEOUT_S)
        while not error.fatal():
            try:
                self.producer.abort_transaction(STEP_TIMEOUT_S)
                self.stats["aborted"] += 1
                break
            except KafkaException as exception:
                error = exception.args[0]
                self.note(f"abort_transaction: {error}")
                if not error.retriable() and not error.fatal():
                    raise
                deadline.check("the transaction to abort")
        if error.fatal():
            self.producer = self.new_producer()
        self.rewind()

    def step(self):
        """Consumes up to a batch and runs it as one transaction; returns
        whether there was anything to do."""
        messages = self.consumer.consume(num_messages=self.args.batch, timeout=0.2)
        records = []
        for message in messages:
            if message.error() is None:
                records.append(message)
            elif message.error().code() != KafkaError._PARTITION_EOF:
                self.note(f"consume: {message.error()}")
        if not records:
            return False
        try:
            self.transaction(records)
        except KafkaException as exception:
            self.recover(exception.args[0])
            return True
        self.stats["committed"] += 1
        self.stats["records"] += len(records)
        return True

    def run(self):
        deadline = Deadline(self.args.max_seconds)
        while True:
            deadline.check(f"the group's committed offsets to reach {self.ends}")
            if not self.step() and self.done():
                break
        self.consumer.close()
        return self.stats


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    seeding = commands.add_parser("seed")
    seeding.add_argument("bootstrap")
    seeding.add_argument("topic")
    seeding.add_argument("--count", type=int, required=True)
    seeding.add_argument("--keys", type=int, default=10)
    looping = commands.add_parser("run")
    for name in ["bootstrap", "input", "output", "group", "transactional_id"]:
        looping.add_argument(name)
    looping.add_argument("--batch", type=int, default=4)
    looping.add_argument("--transaction-timeout-ms", type=int, default=8000)
    looping.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.command == "seed":
        return seed(args)
    return Loop(args).run()


if __name__ == "__main__":
    run(main)
