#!/usr/bin/env bash
# User activity analytics, as the Kafka Streams articles describe it:
#   page-views ──windowed-count, group_by=page──▶ views-per-minute
#   clicks     ──sessionize──▶ click-sessions
#   page-views ──top-n, item=page──▶ top-pages (compacted)
# Both inputs are keyed by user id. Counting per page needs every view of a
# page in one task: windowed-count and top-n re-key through their
# repartition topic (`sluice.repartition`).
#
# Needs a running broker (`sluice serve`), kcat, and Python with
# confluent-kafka (to produce records with their own timestamps; by default
# tests/clients/python/.venv, which scripts/test creates). Environment:
#   SLUICE_BROKERS (default 127.0.0.1:9092), SLUICE_ADMIN (default
#   http://127.0.0.1:9644), SLUICE (the sluice binary, default: on PATH),
#   PLUGINS (folder of built plugins; default: build them here), PYTHON.
# Exits non-zero when a result differs from the reference computed from
# the produced input.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
sluice="${SLUICE:-sluice}"
brokers="${SLUICE_BROKERS:-127.0.0.1:9092}"
admin="${SLUICE_ADMIN:-http://127.0.0.1:9644}"
python="${PYTHON:-$root/tests/clients/python/.venv/bin/python}"
export SLUICE="$sluice" SLUICE_BROKERS="$brokers" SLUICE_ADMIN="$admin"
if ! "$python" -c 'import confluent_kafka' 2>/dev/null; then
    echo "no confluent-kafka in $python: run scripts/test once, or set PYTHON" >&2
    exit 2
fi
# REPARTITION=false shows what it takes without re-keying: (a) counts per
# (user, page) and (c) ranks a single-partition page-views topic, each where
# the records are.
export REPARTITION="${REPARTITION:-true}"
if [ "$REPARTITION" = true ]; then views_partitions=3; else views_partitions=1; fi

if [ -z "${PLUGINS:-}" ]; then
    (cd "$root" && cargo build --quiet --profile plugin --target wasm32-wasip2 \
        -p windowed-count -p sessionize -p top-n)
    PLUGINS="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip2/plugin"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$sluice" topic create page-views --partitions "$views_partitions" >/dev/null
for topic in clicks views-per-minute click-sessions; do
    "$sluice" topic create "$topic" --partitions 3 >/dev/null
done
"$sluice" topic create top-pages --partitions 1 --config cleanup.policy=compact >/dev/null

# (a) Views per page per minute: re-keyed by page, counted per 1-minute
# window, every update written. The grace (an hour) covers the disorder of
# a repartition partition, which merges every user partition's views.
"$sluice" processor deploy views-per-minute --wasm "$PLUGINS/windowed_count.wasm" \
    --input page-views --output views-per-minute --store counts \
    --config size_ms=60000 --config grace_ms=3600000 --config group_by=page \
    --config repartition="$REPARTITION" >/dev/null
# (b) Clicks per user session: 5 minutes without a click ends a session.
"$sluice" processor deploy click-sessions --wasm "$PLUGINS/sessionize.wasm" \
    --input clicks --output click-sessions --store sessions --config gap_ms=300000 >/dev/null
# (c) Running top 3 pages over all views.
"$sluice" processor deploy top-pages --wasm "$PLUGINS/top_n.wasm" \
    --input page-views --output top-pages --store top \
    --config item=page --config n=3 --config repartition="$REPARTITION" >/dev/null

"$python" "$here/analytics.py" produce "$work"
views="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["views"])' "$work/reference.json")"
clicks="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clicks"])' "$work/reference.json")"

# Waits (at most 60 s) until processor $1 has read $2 input records and has
# no lag.
wait_settled() {
    for _ in $(seq 1 600); do
        settled="$("$sluice" processor status "$1" --format json | python3 -c '
import json, sys
s = json.load(sys.stdin)
if s["state"] == "failed":
    print("failed:", s["last_error"])
else:
    print("yes" if s["records_in"] >= int(sys.argv[1]) and s["lag"] == 0 else "no")' "$2")"
        [ "$settled" = yes ] && return 0
        case "$settled" in failed*) echo "processor $1 $settled" >&2 && exit 1 ;; esac
        sleep 0.1
    done
    echo "processor $1 did not settle" >&2
}
wait_settled views-per-minute "$views"
wait_settled click-sessions "$((clicks + 3))"
wait_settled top-pages "$views"

# The results, checked against the reference; a few retries (bounded) for
# outputs committed a moment after the status showed no lag.
echo "results:"
for _ in $(seq 1 20); do
    if "$python" "$here/analytics.py" check "$work" >"$work/check.txt"; then
        cat "$work/check.txt"
        exit 0
    fi
    sleep 0.5
done
cat "$work/check.txt"
exit 1
