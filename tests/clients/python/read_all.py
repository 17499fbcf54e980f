"""Prints every record of a topic (confluent-kafka, no group).

usage: read_all.py BOOTSTRAP TOPIC [--isolation read_committed|read_uncommitted]
output: {"partitions": {"0": [[offset, key, value], ...], ...}}
"""

import argparse

from common import read_all, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument(
        "--isolation", choices=["read_committed", "read_uncommitted"], default="read_committed"
    )
    args = parser.parse_args()
    return {"partitions": read_all(args.bootstrap, args.topic, args.timeout_s, args.isolation)}


if __name__ == "__main__":
    run(main)
