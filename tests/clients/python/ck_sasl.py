"""confluent-kafka: authenticate with SASL (PLAIN, SCRAM-SHA-256 or
SCRAM-SHA-512), produce three records to TOPIC and read them back. With
CA_FILE, over TLS (SASL_SSL) trusting the certificates in it.

usage: ck_sasl.py BOOTSTRAP MECHANISM USER PASSWORD TOPIC [CA_FILE]
output: {"consumed": ["one", "two", "three"]}
An authentication failure is reported as "error: ..." with exit 1.
"""

import sys
import uuid

from confluent_kafka import Consumer, KafkaError, Producer

from common import Deadline, Failure, run


def main():
    bootstrap, mechanism, user, password, topic = sys.argv[1:6]
    ca_file = sys.argv[6] if len(sys.argv) > 6 else None
    security = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL" if ca_file else "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if ca_file:
        security["ssl.ca.location"] = ca_file
    errors = []

    def on_error(error):
        errors.append(error)

    producer = Producer({**security, "error_cb": on_error, "message.timeout.ms": 10000})
    values = ["one", "two", "three"]
    for value in values:
        producer.produce(topic, value.encode())
    producer.flush(15)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if auth:
        raise Failure(f"authentication failed: {auth[0].str()}")
    consumer = Consumer(
        {
            **security,
            "group.id": f"sasl-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "error_cb": on_error,
        }
    )
    consumer.subscribe([topic])
    consumed = []
    deadline = Deadline(30)
    while len(consumed) < len(values) and not deadline.passed():
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            consumed.append(message.value().decode())
    consumer.close()
    return {"consumed": consumed}


if __name__ == "__main__":
    run(main)
