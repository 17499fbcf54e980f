"""confluent-kafka: a consumer group of three (Consumer objects in threads)
on a six-partition topic while a producer keeps producing; one member
leaves and the other two take over its partitions.

usage: ck_group_rebalance.py BOOTSTRAP TOPIC GROUP [--partitions 6] [--members 3]
Steps, each with a deadline:
  1. create TOPIC; start the producer (values "v-<i>", partition i % PARTITIONS)
     and MEMBERS consumers subscribed as GROUP;
  2. wait until the members' assignments are disjoint and cover every
     partition, each member holding PARTITIONS / MEMBERS ("first");
  3. wait until every member has consumed something, then close the last
     member (LeaveGroup);
  4. wait until the remaining members cover every partition again ("second")
     and have consumed records produced after that;
  5. stop the producer, wait until every acknowledged value was consumed.
output: {"first": {member: [partitions]}, "second": {member: [partitions]},
         "acknowledged": n, "consumed_unique": n, "duplicates": n,
         "missing": [up to 20 values], "produce_failures": [errors]}
"""

import argparse
import threading
import time

from confluent_kafka import KafkaError, Consumer, Producer

from common import STEP_TIMEOUT_S, Failure, create_topic, run, wait_until


class Shared:
    """State the producer and member threads update under one lock."""

    def __init__(self, members):
        self.lock = threading.Lock()
        self.assignments = {member: set() for member in range(members)}
        self.consumed = {}  # value -> times consumed
        self.consumed_by = {member: 0 for member in range(members)}
        self.acknowledged = set()
        self.produce_failures = []
        self.errors = []

    def snapshot(self):
        with self.lock:
            return {member: sorted(parts) for member, parts in self.assignments.items()}


def member_loop(bootstrap, topic, group, member, shared, stop):
    # Eager protocols pass the whole assignment, cooperative ones the change:
    # adding and removing what is passed tracks both.
    def on_assign(consumer, partitions):
        with shared.lock:
            shared.assignments[member] |= {tp.partition for tp in partitions}

    def on_revoke(consumer, partitions):
        with shared.lock:
            shared.assignments[member] -= {tp.partition for tp in partitions}

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": f"member-{member}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": 6000,
            # Members learn of a rebalance from their next heartbeat.
            "heartbeat.interval.ms": 300,
            "max.poll.interval.ms": 20000,
        }
    )
    try:
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    with shared.lock:
                        shared.errors.append(f"member {member}: {message.error()}")
                continue
            value = message.value().decode("utf-8")
            with shared.lock:
                shared.consumed[value] = shared.consumed.get(value, 0) + 1
                shared.consumed_by[member] += 1
    except Exception as error:  # noqa: BLE001 - surfaced by the main thread
        with shared.lock:
            shared.errors.append(f"member {member}: {error!r}")
    finally:
        consumer.close()
        with shared.lock:
            shared.assignments[member] = set()


def producer_loop(bootstrap, topic, partitions, shared, stop):
    def report(error, message):
        with shared.lock:
            if error is None:
                shared.acknowledged.add(message.value().decode("utf-8"))
            else:
                shared.produce_failures.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(STEP_TIMEOUT_S * 1000),
        }
    )
    i = 0
    while not stop.is_set():
        producer.produce(topic, value=f"v-{i}", partition=i % partitions, on_delivery=report)
        i += 1
        producer.poll(0)
        time.sleep(0.002)  # pacing: a steady stream, not a flood
    left = producer.flush(STEP_TIMEOUT_S)
    if left:
        with shared.lock:
            shared.produce_failures.append(f"{left} messages undelivered at the end")


def covers_all(assignments, members, partitions):
    """The listed members hold disjoint sets that cover every partition."""
    held = [assignments[member] for member in members]
    flat = [partition for parts in held for partition in parts]
    return len(flat) == len(set(flat)) and set(flat) == set(range(partitions))


def check_errors(shared):
    with shared.lock:
        if shared.errors:
            raise Failure("consumer errors: " + "; ".join(shared.errors[:5]))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    members = list(range(args.members))
    create_topic(args.bootstrap, args.topic, args.partitions)

    shared = Shared(args.members)
    stop_producer = threading.Event()
    stops = {member: threading.Event() for member in members}
    threads = {
        member: threading.Thread(
            target=member_loop,
            args=(args.bootstrap, args.topic, args.group, member, shared, stops[member]),
            daemon=True,
        )
        for member in members
    }
    producer = threading.Thread(
        target=producer_loop,
        args=(args.bootstrap, args.topic, args.partitions, shared, stop_producer),
        daemon=True,
    )
    producer.start()
    for thread in threads.values():
        thread.start()
    try:
        return scenario(args, members, shared, stops, threads, stop_producer, producer)
    finally:
        stop_producer.set()
        for stop in stops.values():
            stop.set()
        for thread in [producer, *threads.values()]:
            thread.join(STEP_TIMEOUT_S)


def scenario(args, members, shared, stops, threads, stop_producer, producer):
    share = args.partitions // args.members

    def balanced():
        check_errors(shared)
        assignments = shared.snapshot()
        return covers_all(
            {m: set(p) for m, p in assignments.items()}, members, args.partitions
        ) and all(len(assignments[m]) == share for m in members)

    wait_until(balanced, f"every member to hold {share} partitions: {shared.snapshot()}")
    first = shared.snapshot()

    def all_consuming():
        with shared.lock:
            return all(shared.consumed_by[m] > 0 for m in members)

    wait_until(all_consuming, "every member to consume something")

    leaver = members[-1]
    stay = members[:-1]
    stops[leaver].set()
    threads[leaver].join(STEP_TIMEOUT_S)
    if threads[leaver].is_alive():
        raise Failure(f"member {leaver} did not close within {STEP_TIMEOUT_S} s")

    def taken_over():
        check_errors(shared)
        assignments = shared.snapshot()
        return covers_all({m: set(p) for m, p in assignments.items()}, stay, args.partitions)

    wait_until(taken_over, f"members {stay} to hold every partition: {shared.snapshot()}")
    second = {m: parts for m, parts in shared.snapshot().items() if m in stay}

    # Records produced after the takeover are consumed too.
    with shared.lock:
        mark = sum(shared.consumed_by.values())
    wait_until(
        lambda: sum(shared.consumed_by.values()) >= mark + 200,
        "200 more records consumed after the takeover",
    )
    stop_producer.set()
    producer.join(STEP_TIMEOUT_S + 5)
    if producer.is_alive():
        raise Failure("producer did not finish")

    def everything_consumed():
        check_errors(shared)
        with shared.lock:
            return shared.acknowledged.issubset(shared.consumed.keys())

    try:
        wait_until(everything_consumed, "every acknowledged value to be consumed")
    except Failure:
        pass  # reported below as "missing"
    with shared.lock:
        missing = sorted(shared.acknowledged - shared.consumed.keys())
        return {
            "first": {str(m): parts for m, parts in first.items()},
            "second": {str(m): parts for m, parts in second.items()},
            "acknowledged": len(shared.acknowledged),
            "consumed_unique": len(shared.consumed),
            "duplicates": sum(count - 1 for count in shared.consumed.values()),
            "missing_count": len(missing),
            "missing": missing[:20],
            "produce_failures": shared.produce_failures[:20],
        }


if __name__ == "__main__":
    run(main)
