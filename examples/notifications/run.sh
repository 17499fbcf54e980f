#!/usr/bin/env bash
# Unread notifications per user, queryable over HTTP:
#   notifications ──aggregate-json (sum of delta per user)──▶ unread-counts
# A "sent" notification carries delta +1, a "read" one −1, so a user's sum
# is their unread count, kept in the processor's store and read back with
# GET /v1/processors/unread/stores/aggregates/keys/<user>.
#
# Needs a running broker (`sluice serve`), kcat and python3. Environment:
#   SLUICE_BROKERS (default 127.0.0.1:9092), SLUICE_ADMIN (default
#   http://127.0.0.1:9644), SLUICE (the sluice binary, default: on PATH),
#   PLUGINS (folder of built plugins; default: build them here).
# Exits non-zero when a queried count differs from the reference.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
sluice="${SLUICE:-sluice}"
brokers="${SLUICE_BROKERS:-127.0.0.1:9092}"
admin="${SLUICE_ADMIN:-http://127.0.0.1:9644}"
export SLUICE_BROKERS="$brokers" SLUICE_ADMIN="$admin"

if [ -z "${PLUGINS:-}" ]; then
    (cd "$root" && cargo build --quiet --profile plugin --target wasm32-wasip2 -p aggregate-json)
    PLUGINS="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip2/plugin"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$sluice" topic create notifications --partitions 3 >/dev/null
"$sluice" topic create unread-counts --partitions 3 --config cleanup.policy=compact >/dev/null
"$sluice" processor deploy unread --wasm "$PLUGINS/aggregate_json.wasm" \
    --input notifications --output unread-counts --store aggregates \
    --config field=delta --config group_by=user >/dev/null

# The input (seeded, so every run is the same): 300 notifications for 8
# users; a "read" only ever follows its own "sent". The reference counts go
# to expected.json.
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
rng = random.Random(7)
users = [f"user-{i}" for i in range(1, 9)]
unread = {u: [] for u in users}
expected = {u: 0 for u in users}
lines = []
for n in range(300):
    user = rng.choice(users)
    if unread[user] and rng.random() < 0.45:
        id = unread[user].pop(rng.randrange(len(unread[user])))
        kind, delta = "read", -1
    else:
        id = n
        unread[user].append(id)
        kind, delta = "sent", 1
    expected[user] += delta
    value = {"user": user, "id": id, "type": kind, "delta": delta}
    lines.append(f"{user}\t{json.dumps(value, separators=(',', ':'))}")
open(f"{work}/notifications.tsv", "w").write("\n".join(lines) + "\n")
json.dump(expected, open(f"{work}/expected.json", "w"))
PY
# Keyed by user (murmur2, as Kafka's Java client): a user's notifications
# stay in order in one partition.
kcat -P -q -b "$brokers" -t notifications -K '\t' -X partitioner=murmur2_random \
    -X acks=all <"$work/notifications.tsv"

# Wait (at most 60 s) until every notification is processed and committed.
for _ in $(seq 1 600); do
    settled="$("$sluice" processor status unread --format json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("yes" if s["records_in"] >= 300 and s["lag"] == 0 else "no")')"
    [ "$settled" = yes ] && break
    sleep 0.1
done

# Query each user's count over HTTP and compare with the reference. The
# admin API wants the broker's token: `sluice processor token` finds it.
token="$("$sluice" processor token)"
python3 - "$work/expected.json" "$admin" "$token" <<'PY'
import json, sys, urllib.request
expected = json.load(open(sys.argv[1]))
admin, token = sys.argv[2], sys.argv[3]
wrong = 0
print("unread:")
for user, count in sorted(expected.items()):
    url = f"{admin}/v1/processors/unread/stores/aggregates/keys/{user}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            got = json.load(response)["value"]["sum"]
    except Exception as error:  # a 404 when the key is missing, say
        got = f"error: {error}"
    mark = "ok" if got == count else f"WRONG (expected {count})"
    wrong += got != count
    print(f"{user} {got if isinstance(got, str) else int(got)} {mark}")
sys.exit(1 if wrong else 0)
PY
