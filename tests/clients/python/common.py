"""Helpers shared by the client scripts the black-box tests run.

Every script takes the broker's bootstrap address and its other parameters
on the command line, prints one JSON object on stdout and exits 0; on any
failure it prints `error: ...` on stderr and exits 1, so the Rust test can
show why. Every wait has a deadline.
"""

import json
import sys
import time
import traceback
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# How long any single step (create a topic, read a topic, flush) may take.
STEP_TIMEOUT_S = 30.0


class Failure(Exception):
    """A check failed or a wait ran out of time; the message says which."""


def run(main):
    """Runs `main()`, printing its result as JSON or the failure and exiting 1."""
    try:
        result = main()
    except Failure as failure:
        print(f"error: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - any crash is a test failure, say where
        print("error: unexpected exception", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    emit(result)


def emit(result):
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


class Deadline:
    """A point in time `seconds` from now."""

    def __init__(self, seconds):
        self.at = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return max(0.0, self.at - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.at

    def check(self, what):
        if self.passed():
            raise Failure(f"timed out after {self.seconds:.0f} s waiting for {what}")


def wait_until(condition, what, seconds=STEP_TIMEOUT_S, interval_s=0.02):
    """Polls `condition()` until it is true or the deadline passes."""
    deadline = Deadline(seconds)
    while not condition():
        deadline.check(what)
        time.sleep(interval_s)


def create_topic(bootstrap, topic, partitions):
    """Creates `topic` with `partitions` partitions through the admin API."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=STEP_TIMEOUT_S,
        request_timeout=STEP_TIMEOUT_S,
    )
    try:
        futures[topic].result(timeout=STEP_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - report the client's reason
        raise Failure(f"CreateTopics {topic} ({partitions} partitions): {error}") from error


def text(value):
    return None if value is None else value.decode("utf-8")


def read_all(bootstrap, topic, seconds=STEP_TIMEOUT_S, isolation="read_committed"):
    """Every record of `topic` up to the end offsets taken at the start
    (under read_committed, librdkafka's default, the last stable offsets):
    {partition: [[offset, key, value], ...]} in offset order. No group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-all-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=STEP_TIMEOUT_S)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise Failure(f"topic {topic} not in metadata: {described and described.error}")
        partitions = sorted(described.partitions)
        ends = {}
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=STEP_TIMEOUT_S
            )
            ends[partition] = high
        records = {partition: [] for partition in partitions}
        pending = {partition for partition in partitions if ends[partition] > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = Deadline(seconds)
        while pending:
            deadline.check(f"reading {topic} to its high watermarks {ends}")
            message = consumer.poll(0.2)
            if message is None:
                continue
            partition = message.partition()
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    if message.offset() >= ends[partition]:
                        pending.discard(partition)
                    continue
                raise Failure(f"reading {topic} [{partition}]: {message.error()}")
            if message.offset() >= ends[partition]:
                pending.discard(partition)
                continue
            records[partition].append(
                [message.offset(), text(message.key()), text(message.value())]
            )
            if message.offset() + 1 >= ends[partition]:
                pending.discard(partition)
        return {str(partition): rows for partition, rows in records.items()}
    finally:
        consumer.close()


def isolated_consumer(bootstrap, isolation):
    """A consumer with no group offsets in play (a fresh group id, no
    commits) reading at `isolation` ("read_committed" or
    "read_uncommitted")."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )


def read_until_last(consumer, last_values, seconds=STEP_TIMEOUT_S):
    """Reads every partition of `last_values` ({(topic, partition): value})
    from offset 0 until the last record read there has that value:
    {(topic, partition): [[offset, value], ...]} in offset order.

    Records of a partition arrive in offset order, so anything the broker
    should have hidden from this consumer but stored before that last value
    (an aborted transaction's records) is read too: the caller sees it."""
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in last_values])
    records = {key: [] for key in last_values}
    deadline = Deadline(seconds)

    def finished():
        return all(rows and rows[-1][1] == last_values[key] for key, rows in records.items())

    while not finished():
        deadline.check(f"the last values {last_values} (read {records})")
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise Failure(f"consume: {message.error()}")
        key = (message.topic(), message.partition())
        records[key].append([message.offset(), text(message.value())])
    return records


def watermarks(bootstrap, isolation, partitions):
    """{topic: {partition: [low, high]}} as a consumer at `isolation` sees
    them (read_committed: high is the last stable offset). A consumer of its
    own: one that is fetching would answer only after its fetch long-poll,
    as a broker answers one connection's requests in order."""
    consumer = isolated_consumer(bootstrap, isolation)
    try:
        result = {}
        for topic, partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=STEP_TIMEOUT_S, cached=False
            )
            result.setdefault(topic, {})[str(partition)] = [low, high]
        return result
    finally:
        consumer.close()


def by_topic(records):
    """{(topic, partition): x} as {topic: {"partition": x}} for JSON."""
    result = {}
    for (topic, partition), value in records.items():
        result.setdefault(topic, {})[str(partition)] = value
    return result
