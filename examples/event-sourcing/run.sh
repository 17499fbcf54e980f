#!/usr/bin/env bash
# Event sourcing: account events are the source of truth; balances are a
# projection of them, rebuilt from the events at will.
#   account-events ──projection──▶ balances (compacted; store `accounts`)
#   account-events ──projection, --from earliest──▶ balances-rebuilt
# then the live projection itself is rebuilt in place (`--from earliest
# --reset-state`) and must come back to the same state.
#
# Needs a running broker (`sluice serve`), kcat and python3. Environment:
#   SLUICE_BROKERS (default 127.0.0.1:9092), SLUICE_ADMIN (default
#   http://127.0.0.1:9644), SLUICE (the sluice binary, default: on PATH),
#   PLUGINS (folder of built plugins; default: build them here).
# Exits non-zero when a balance differs from the reference or the rebuilt
# projection differs from the live one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
sluice="${SLUICE:-sluice}"
brokers="${SLUICE_BROKERS:-127.0.0.1:9092}"
admin="${SLUICE_ADMIN:-http://127.0.0.1:9644}"
export SLUICE_BROKERS="$brokers" SLUICE_ADMIN="$admin"

if [ -z "${PLUGINS:-}" ]; then
    (cd "$root" && cargo build --quiet --profile plugin --target wasm32-wasip2 -p projection)
    PLUGINS="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip2/plugin"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Waits (at most 60 s) until processor $1 has processed and committed $2
# input records.
wait_settled() {
    for _ in $(seq 1 600); do
        settled="$("$sluice" processor status "$1" --format json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("yes" if s["records_in"] >= int(sys.argv[1]) and s["lag"] == 0 else "no")' "$2")"
        [ "$settled" = yes ] && return 0
        sleep 0.1
    done
    echo "processor $1 did not settle" >&2
}

# Waits (at most 60 s) until processor $1's committed input offsets add
# up to $2 with no lag (after a reset they start again from 0).
wait_committed() {
    for _ in $(seq 1 600); do
        settled="$("$sluice" processor status "$1" --format json | python3 -c '
import json, sys
s = json.load(sys.stdin)
committed = sum(max(p["committed_offset"], 0) for p in s["partitions"])
print("yes" if committed >= int(sys.argv[1]) and s["lag"] == 0 else "no")' "$2")"
        [ "$settled" = yes ] && return 0
        sleep 0.1
    done
    echo "processor $1 did not settle" >&2
}

# The latest record per key of compacted topic $1, as `key<TAB>value`
# sorted by key; a key whose latest record is a tombstone is left out.
latest_per_key() {
    kcat -C -q -e -b "$brokers" -t "$1" -f '%k\t%S\t%s\n' | python3 -c '
import sys
latest = {}
for line in sys.stdin:
    key, size, value = line.rstrip("\n").split("\t", 2)
    latest[key] = None if size == "-1" else value
for key in sorted(latest):
    if latest[key] is not None:
        print(f"{key}\t{latest[key]}")'
}

"$sluice" topic create account-events --partitions 3 >/dev/null
for topic in balances balances-rebuilt; do
    "$sluice" topic create "$topic" --partitions 3 --config cleanup.policy=compact >/dev/null
done
"$sluice" processor deploy balances --wasm "$PLUGINS/projection.wasm" \
    --input account-events --output balances --store accounts >/dev/null

# The events (seeded, so every run is the same): 500 valid events over 12
# accounts, some closed and some reopened. The reference state goes to
# expected.json (`null`: closed).
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
rng = random.Random(11)
accounts = [f"acct-{i:02}" for i in range(1, 13)]
state = {}  # account -> {"account","balance","status","events"}; absent: not open
lines = []
for _ in range(500):
    account = rng.choice(accounts)
    current = state.get(account)
    if current is None:
        event = {"type": "opened", "account": account}
        state[account] = {"account": account, "balance": 0, "status": "open", "events": 1}
    else:
        roll = rng.random()
        if roll < 0.04:
            event = {"type": "closed", "account": account}
            del state[account]
        elif roll < 0.6 or current["balance"] == 0:
            amount = rng.randrange(1, 10_000)
            event = {"type": "deposited", "account": account, "amount": amount}
            current["balance"] += amount
            current["events"] += 1
        else:
            amount = rng.randrange(1, current["balance"] + 1)
            event = {"type": "withdrawn", "account": account, "amount": amount}
            current["balance"] -= amount
            current["events"] += 1
    lines.append(f"{account}\t{json.dumps(event, separators=(',', ':'))}")
open(f"{work}/events.tsv", "w").write("\n".join(lines) + "\n")
json.dump({a: state.get(a) for a in accounts}, open(f"{work}/expected.json", "w"))
PY
# Keyed by account: an account's events stay in order in one partition.
kcat -P -q -b "$brokers" -t account-events -K '\t' -X partitioner=murmur2_random \
    -X acks=all <"$work/events.tsv"
wait_settled balances 500

# Every account's state, as the live projection answers a query.
echo "balances:"
wrong=0
for account in $(python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$work/expected.json"); do
    got="$("$sluice" processor state get balances accounts "$account" --format json 2>/dev/null || echo null)"
    verdict="$(python3 -c '
import json, sys
expected = json.load(open(sys.argv[1]))[sys.argv[2]]
got = json.loads(sys.argv[3])
got = got.get("value") if isinstance(got, dict) else None
shown = "closed" if got is None else got["balance"]
print(f"{shown} ok" if got == expected else f"{shown} WRONG (expected {expected})")' \
        "$work/expected.json" "$account" "$got")"
    echo "$account $verdict"
    case "$verdict" in *WRONG*) wrong=1 ;; esac
done
echo

# Rebuild: a second projection of the same events from the start must
# reach the same state, in its store and on its compacted topic.
"$sluice" processor deploy balances-rebuilt --wasm "$PLUGINS/projection.wasm" \
    --input account-events --output balances-rebuilt --store accounts --from earliest >/dev/null
wait_settled balances-rebuilt 500
latest_per_key balances >"$work/live.tsv"
latest_per_key balances-rebuilt >"$work/rebuilt.tsv"
"$sluice" processor state scan balances accounts --limit 1000 >"$work/live-state.txt"
"$sluice" processor state scan balances-rebuilt accounts --limit 1000 >"$work/rebuilt-state.txt"
echo "rebuilt:"
if [ -s "$work/live.tsv" ] && cmp -s "$work/live.tsv" "$work/rebuilt.tsv"; then
    echo "topic equal ($(wc -l <"$work/live.tsv") accounts)"
else
    echo "topic DIFFERENT"
    diff "$work/live.tsv" "$work/rebuilt.tsv" || true
    wrong=1
fi
if [ -s "$work/live-state.txt" ] && cmp -s "$work/live-state.txt" "$work/rebuilt-state.txt"; then
    echo "state equal"
else
    echo "state DIFFERENT"
    diff "$work/live-state.txt" "$work/rebuilt-state.txt" || true
    wrong=1
fi
echo

# Reset: the live projection thrown away and rebuilt in place from the
# first event must come back to the same state, in its store and as the
# latest state per account on its topic.
"$sluice" processor deploy balances --wasm "$PLUGINS/projection.wasm" \
    --input account-events --output balances --store accounts \
    --from earliest --reset-state >/dev/null
wait_committed balances 500
latest_per_key balances >"$work/reset.tsv"
"$sluice" processor state scan balances accounts --limit 1000 >"$work/reset-state.txt"
echo "reset:"
if cmp -s "$work/live.tsv" "$work/reset.tsv"; then
    echo "topic equal ($(wc -l <"$work/reset.tsv") accounts)"
else
    echo "topic DIFFERENT"
    diff "$work/live.tsv" "$work/reset.tsv" || true
    wrong=1
fi
if cmp -s "$work/live-state.txt" "$work/reset-state.txt"; then
    echo "state equal"
else
    echo "state DIFFERENT"
    diff "$work/live-state.txt" "$work/reset-state.txt" || true
    wrong=1
fi
exit "$wrong"
