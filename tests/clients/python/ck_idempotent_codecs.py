"""confluent-kafka: an idempotent producer (enable.idempotence) per codec,
then a consumer reads the topic back.

usage: ck_idempotent_codecs.py BOOTSTRAP TOPIC [--partitions 3] [--count 200]
                               [--codecs none,gzip,snappy,lz4,zstd]
Creates TOPIC; for each codec a fresh producer sends COUNT values
"<codec>-<i>" (key "k<i>") to partition i % PARTITIONS and waits for every
delivery report; then every record is read back.
output: {"codecs": {codec: {"delivered": n, "failed": [errors]}},
         "produced": {partition: [values in send order]},
         "delivered_offsets": {partition: [offsets in report order]},
         "consumed": {partition: [values in offset order]}}
"""

import argparse

from confluent_kafka import Producer

from common import STEP_TIMEOUT_S, Failure, create_topic, read_all, run


def produce_with(bootstrap, topic, codec, partitions, count, produced, offsets):
    failed = []
    delivered = []

    def report(error, message):
        if error is not None:
            failed.append(str(error))
        else:
            delivered.append(1)
            offsets.setdefault(str(message.partition()), []).append(message.offset())

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "compression.type": codec,
            # Batches of many records, so every codec really compresses.
            "linger.ms": 20,
            "message.timeout.ms": int(STEP_TIMEOUT_S * 1000),
        }
    )
    for i in range(count):
        partition = i % partitions
        value = f"{codec}-{i}"
        producer.produce(topic, value=value, key=f"k{i}", partition=partition, on_delivery=report)
        produced.setdefault(str(partition), []).append(value)
        producer.poll(0)
    left = producer.flush(STEP_TIMEOUT_S)
    if left:
        raise Failure(f"{codec}: {left} messages still undelivered after {STEP_TIMEOUT_S} s")
    return {"delivered": len(delivered), "failed": failed}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--codecs", default="none,gzip,snappy,lz4,zstd")
    args = parser.parse_args()

    create_topic(args.bootstrap, args.topic, args.partitions)
    produced = {}
    offsets = {}
    codecs = {}
    for codec in args.codecs.split(","):
        codecs[codec] = produce_with(
            args.bootstrap, args.topic, codec, args.partitions, args.count, produced, offsets
        )
    records = read_all(args.bootstrap, args.topic)
    consumed = {partition: [row[2] for row in rows] for partition, rows in records.items()}
    return {
        "codecs": codecs,
        "produced": produced,
        "delivered_offsets": offsets,
        "consumed": consumed,
    }


if __name__ == "__main__":
    run(main)
