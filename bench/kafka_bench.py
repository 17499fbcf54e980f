"""Kafka-protocol benchmark of a running broker with a real client
(confluent-kafka, i.e. librdkafka).

Measures, for 1 KiB records: produce MB/s (acks=all and acks=1), consume
MB/s, end-to-end latency percentiles at a fixed rate, and the broker's
CPU-seconds per GB produced (from /proc/<pid>/stat). Prints one JSON object.

usage: kafka_bench.py BOOTSTRAP BROKER_PID [--records N] [--rate R] [--seconds S]
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VALUE = b"x" * 1024


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(30)


def produce(bootstrap, topic, records, acks):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1048576,
        "queue.buffering.max.kbytes": 1048576,
        "queue.buffering.max.messages": 1000000,
    })
    failures = []

    def report(error, _message):
        if error is not None:
            failures.append(str(error))

    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, VALUE, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} deliveries failed, first: {failures[0]}")
    return records * len(VALUE) / elapsed / 1e6


def consume(bootstrap, topic, partitions, records):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    started = time.perf_counter()
    deadline = started + 120
    while seen < records and time.perf_counter() < deadline:
        for message in consumer.consume(10000, 1.0):
            if message.error() is None:
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    if seen < records:
        raise SystemExit(f"consumed only {seen} of {records} records")
    return seen * len(VALUE) / elapsed / 1e6


def receive_latencies(bootstrap, topic, total, results):
    """Consumer process: records receive time minus the send time carried
    in each value (CLOCK_MONOTONIC is system-wide, so comparable)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "fetch.min.bytes": 1,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    latencies = []
    deadline = time.monotonic() + 120
    results.put("ready")
    while len(latencies) < total and time.monotonic() < deadline:
        # poll() returns as soon as one message is there; consume(n) would
        # wait for n of them and add its own latency.
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            latencies.append(time.monotonic() - float(message.value()[:20]))
    consumer.close()
    results.put(latencies)


def latency(bootstrap, topic, rate, seconds):
    import multiprocessing

    total = rate * seconds
    results = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=receive_latencies, args=(bootstrap, topic, total, results))
    receiver.start()
    results.get(timeout=60)
    time.sleep(1.0)  # the consumer's first fetch is in flight before timing starts
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    # Connect and learn the topic's metadata before timing starts, so the
    # first records do not wait for the bootstrap.
    producer.list_topics(topic, timeout=30)
    # Paced in 1 ms ticks, sleeping between them, so the producer does not
    # spin a core the broker and consumer need.
    per_tick = max(1, rate // 1000)
    started = time.monotonic()
    sent = 0
    while sent < total:
        for _ in range(min(per_tick, total - sent)):
            stamp = f"{time.monotonic():20.6f}".encode()
            producer.produce(topic, stamp + VALUE[20:])
            sent += 1
        producer.poll(0)
        pause = started + sent / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    producer.flush(60)
    latencies = results.get(timeout=120)
    if os.environ.get("SLUICE_BENCH_DEBUG"):
        print("first 1000 max %.2fms, rest max %.2fms" % (max(latencies[:1000]) * 1e3, max(latencies[1000:]) * 1e3), file=sys.stderr)
    receiver.join(10)
    if len(latencies) < total:
        raise SystemExit(f"latency run received {len(latencies)} of {total}")
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3
    return {"rate_per_s": rate, "records": total, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": latencies[-1] * 1e3}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("broker_pid", type=int)
    parser.add_argument("--records", type=int, default=200000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()

    results = {"record_bytes": len(VALUE), "records": args.records}
    for acks in ("all", "1"):
        topic = f"bench-{acks}-{uuid.uuid4().hex[:8]}"
        create_topic(args.bootstrap, topic, args.partitions)
        cpu_before = cpu_seconds(args.broker_pid)
        results[f"produce_acks_{acks}_mb_s"] = produce(args.bootstrap, topic, args.records, acks)
        cpu = cpu_seconds(args.broker_pid) - cpu_before
        results[f"broker_cpu_s_per_gb_acks_{acks}"] = cpu / (args.records * len(VALUE) / 1e9)
        if acks == "all":
            cpu_before = cpu_seconds(args.broker_pid)
            results["consume_mb_s"] = consume(args.bootstrap, topic, args.partitions, args.records)
            results["broker_cpu_s_per_gb_consumed"] = (cpu_seconds(args.broker_pid) - cpu_before) / (args.records * len(VALUE) / 1e9)
    if not args.skip_latency:
        topic = "latency-" + uuid.uuid4().hex[:8]
        create_topic(args.bootstrap, topic, 1)
        results["latency"] = latency(args.bootstrap, topic, args.rate, args.seconds)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
