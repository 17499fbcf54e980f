"""confluent-kafka: produce continuously with acks=all until SIGTERM,
appending every acknowledged value to a file as its delivery report arrives.

usage: ck_acked_producer.py BOOTSTRAP TOPIC ACKED_FILE [--partitions 3]
                            [--max-seconds 120]
Creates TOPIC, then sends "a-<i>" to partition i % PARTITIONS as fast as
the broker acknowledges (at most 1000 in flight). Each successful delivery
report appends one line "<value>\\n" to ACKED_FILE, flushed at once, so a
test that kills the broker knows exactly what was acknowledged before the
kill. Broker restarts on the same address are ridden out (the client
reconnects and retries). On SIGTERM (or after MAX_SECONDS) it stops
producing, waits a bounded time for outstanding reports and exits 0.
output: {"sent": n, "acknowledged": n, "failed": n, "errors": {error: count}}
"""

import argparse
import signal

from confluent_kafka import Producer

from common import Deadline, create_topic, run

# Outstanding (unacknowledged) messages allowed before sending pauses: the
# stream runs as fast as the broker acknowledges, with this many in flight.
IN_FLIGHT_MAX = 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("acked_file")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    create_topic(args.bootstrap, args.topic, args.partitions)

    counts = {"acknowledged": 0, "failed": 0}
    errors = {}
    acked = open(args.acked_file, "w", encoding="utf-8")

    def report(error, message):
        if error is None:
            acked.write(message.value().decode("utf-8") + "\n")
            acked.flush()
            counts["acknowledged"] += 1
        else:
            counts["failed"] += 1
            errors[str(error)] = errors.get(str(error), 0) + 1

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 2,
            # Reconnect quickly once the broker is back on the same address.
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "message.timeout.ms": 30000,
        }
    )
    sent = 0
    deadline = Deadline(args.max_seconds)
    try:
        while not stopping and not deadline.passed():
            if len(producer) >= IN_FLIGHT_MAX:
                producer.poll(0.05)
                continue
            producer.produce(
                args.topic, value=f"a-{sent}", partition=sent % args.partitions, on_delivery=report
            )
            sent += 1
            producer.poll(0)
        producer.flush(15)
    finally:
        acked.close()
    return {"sent": sent, **counts, "errors": errors}


if __name__ == "__main__":
    run(main)
