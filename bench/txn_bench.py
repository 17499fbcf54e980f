"""Transactional against idempotent produce with a real client
(confluent-kafka, i.e. librdkafka), for `sluice-bench transactions`, which
runs it once per mode and takes the medians. Prints one JSON object.

Both modes: 1 KiB records, round-robin over the topic's partitions, acks=all
with idempotence, the same batching settings as bench/kafka_bench.py, for
SECONDS. Transactional: begin, produce for INTERVAL_MS, commit (which
flushes first), again; the commits are inside the measured time.
Idempotent: produce for SECONDS, then flush.

Python calls produce() once per record, so the loop can be the limit
rather than the broker: `main_thread_busy` is the main thread's CPU time
over the elapsed time (near 1.0 means the client was the bottleneck) and
`client_cpu_cores` the whole process's (librdkafka's threads included).

usage: txn_bench.py BOOTSTRAP TOPIC --partitions P --seconds S
                    --mode {idempotent,transactional} [--interval-ms 100]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

from confluent_kafka import Producer

VALUE = b"x" * 1024
# produce() calls between clock reads and polls.
CHUNK = 256
TIMEOUT_S = 60.0


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(samples, q):
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_producer(bootstrap, transactional):
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1048576,
        "queue.buffering.max.kbytes": 1048576,
        "queue.buffering.max.messages": 1000000,
        # Only failures call back: a callback per record would cost the
        # Python loop more than the broker does.
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
    }
    if transactional:
        config["transactional.id"] = f"txn-bench-{os.getpid()}"
    return Producer(config)


FAILURES = []


def on_delivery(error, _message):
    if error is not None:
        FAILURES.append(str(error))


def produce_until(producer, topic, partitions, until, state):
    """Produces records round-robin until `until`; returns how many."""
    produced = 0
    while time.monotonic() < until:
        for _ in range(CHUNK):
            try:
                producer.produce(topic, VALUE, partition=state["next"])
            except BufferError:
                producer.poll(0.001)
                continue
            state["next"] = (state["next"] + 1) % partitions
            produced += 1
        producer.poll(0)
    return produced


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--mode", choices=["idempotent", "transactional"], required=True)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    args = parser.parse_args()
    transactional = args.mode == "transactional"
    producer = make_producer(args.bootstrap, transactional)
    if transactional:
        producer.init_transactions(TIMEOUT_S)
    # Connections up before the clock starts.
    producer.list_topics(args.topic, timeout=TIMEOUT_S)
    state = {"next": 0}
    records, commit_ms = 0, []
    started, cpu, thread_cpu = time.monotonic(), cpu_seconds(), time.thread_time()
    end = started + args.seconds
    while True:
        if transactional:
            producer.begin_transaction()
            until = min(time.monotonic() + args.interval_ms / 1000.0, end)
        else:
            until = end
        records += produce_until(producer, args.topic, args.partitions, until, state)
        if transactional:
            committing = time.monotonic()
            producer.commit_transaction(TIMEOUT_S)
            commit_ms.append((time.monotonic() - committing) * 1000.0)
        else:
            left = producer.flush(TIMEOUT_S)
            if left:
                raise SystemExit(f"error: {left} records unacknowledged after {TIMEOUT_S} s")
        if time.monotonic() >= end:
            break
    seconds = time.monotonic() - started
    cpu, thread_cpu = cpu_seconds() - cpu, time.thread_time() - thread_cpu
    if FAILURES:
        raise SystemExit(f"error: {len(FAILURES)} records failed, first: {FAILURES[0]}")
    json.dump(
        {
            "mode": args.mode,
            "records": records,
            "bytes": records * len(VALUE),
            "seconds": seconds,
            "records_per_s": records / seconds,
            "mb_s": records * len(VALUE) / seconds / 1e6,
            "transactions": len(commit_ms),
            "commit_ms_p50": statistics.median(commit_ms) if commit_ms else 0.0,
            "commit_ms_p99": percentile(commit_ms, 0.99),
            "client_cpu_cores": cpu / seconds,
            "main_thread_busy": thread_cpu / seconds,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
