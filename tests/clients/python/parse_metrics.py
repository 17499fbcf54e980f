"""Parses the OpenMetrics text on stdin with the Prometheus project's own
parser (prometheus_client.openmetrics), which refuses malformed input.

usage: parse_metrics.py < metrics.txt
output: {"types": {family: type}, "samples": [[name, {labels}, value], ...]}
"""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from common import run


def main():
    types = {}
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        types[family.name] = family.type
        for sample in family.samples:
            samples.append([sample.name, dict(sample.labels), sample.value])
    return {"types": types, "samples": samples}


if __name__ == "__main__":
    run(main)
