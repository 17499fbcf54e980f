"""confluent-kafka under ACLs: as a SASL user (SCRAM-SHA-256), a
transactional producer with TRANSACTIONAL_ID tries to initialise, then
writes VALUE to TOPIC in a transaction and commits it; an idempotent
producer writes VALUE too.

usage: ck_acl_txn.py BOOTSTRAP USER PASSWORD TOPIC TRANSACTIONAL_ID VALUE
output: {"transactional": "committed" | "<Kafka error name>",
         "idempotent": "delivered" | "<Kafka error name>"}
"""

import sys

from confluent_kafka import KafkaException, Producer

from common import run


def main():
    bootstrap, user, password, topic, transactional_id, value = sys.argv[1:7]
    security = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": password,
    }
    result = {}
    producer = Producer({**security, "transactional.id": transactional_id})
    try:
        producer.init_transactions(15)
        producer.begin_transaction()
        producer.produce(topic, value.encode())
        producer.commit_transaction(15)
        result["transactional"] = "committed"
    except KafkaException as error:
        result["transactional"] = error.args[0].name()

    delivered = []
    idempotent = Producer(
        {**security, "enable.idempotence": True, "message.timeout.ms": 10000}
    )
    idempotent.produce(
        topic,
        value.encode(),
        on_delivery=lambda error, _: delivered.append(error.name() if error else "delivered"),
    )
    idempotent.flush(15)
    result["idempotent"] = delivered[0] if delivered else "not delivered"
    return result


if __name__ == "__main__":
    run(main)
