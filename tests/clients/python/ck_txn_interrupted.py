"""confluent-kafka (librdkafka): a transaction the test interrupts by
killing the broker.

usage:
  ck_txn_interrupted.py open BOOTSTRAP TOPIC TRANSACTIONAL_ID
                        [--partitions 3] [--count 5] [--transaction-timeout-ms 3000]
      Begins a transaction, sends "open-<p>-<i>" (i < COUNT) to every
      partition p of TOPIC, flushes (every record acknowledged, acks=all),
      prints its JSON and exits at once, without ending the transaction or
      closing the producer (os._exit: as if the client had crashed), so the
      transaction stays open on the broker.
      output: {"sent": n}

  ck_txn_interrupted.py commit BOOTSTRAP TOPIC TRANSACTIONAL_ID GROUP
                        [--partitions 3] [--count 5]
      Begins a transaction, sends "commit-<p>-<i>" to every partition p,
      adds GROUP's offsets of TOPIC (partition p at offset 100 + p) to it
      (send_offsets_to_transaction) and commits. Meant for a broker that
      dies while committing: the commit then never returns, the test kills
      this script. Should it return, the script says so.
      output: {"committed": true} or {"committed": false, "error": "..."}
"""

import argparse
import os
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from common import STEP_TIMEOUT_S, Failure, emit, run


def producer(args, timeout_ms):
    created = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": args.transactional_id,
            "transaction.timeout.ms": timeout_ms,
        }
    )
    created.init_transactions(STEP_TIMEOUT_S)
    return created


def send(created, args, prefix):
    created.begin_transaction()
    for p in range(args.partitions):
        for i in range(args.count):
            created.produce(args.topic, value=f"{prefix}-{p}-{i}", partition=p)
    left = created.flush(STEP_TIMEOUT_S)
    if left:
        raise Failure(f"{left} records not acknowledged")
    return args.partitions * args.count


def open_transaction(args):
    created = producer(args, args.transaction_timeout_ms)
    sent = send(created, args, "open")
    emit({"sent": sent})
    # No abort, no close: the transaction stays open, as after a crash.
    os._exit(0)


def commit(args):
    created = producer(args, 60000)
    send(created, args, "commit")
    group = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group})
    offsets = [TopicPartition(args.topic, p, 100 + p) for p in range(args.partitions)]
    created.send_offsets_to_transaction(offsets, group.consumer_group_metadata(), STEP_TIMEOUT_S)
    print("committing", file=sys.stderr, flush=True)
    try:
        created.commit_transaction(STEP_TIMEOUT_S)
    except KafkaException as exception:
        return {"committed": False, "error": str(exception.args[0])}
    return {"committed": True}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ["open", "commit"]:
        command = commands.add_parser(name)
        command.add_argument("bootstrap")
        command.add_argument("topic")
        command.add_argument("transactional_id")
        if name == "commit":
            command.add_argument("group")
        command.add_argument("--partitions", type=int, default=3)
        command.add_argument("--count", type=int, default=5)
        if name == "open":
            command.add_argument("--transaction-timeout-ms", type=int, default=3000)
    args = parser.parse_args()
    if args.command == "open":
        return open_transaction(args)
    return commit(args)


if __name__ == "__main__":
    run(main)
