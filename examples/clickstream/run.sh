#!/usr/bin/env bash
# Clickstream analytics in three processors, end to end:
#   events ──route-by-field──▶ views | clicks | purchases
#   purchases ──filter-json (amount ≥ 100)──▶ big-purchases
#   big-purchases ──map-json (select/rename/set)──▶ alerts
#
# Needs a running broker (`sluice serve`) and kcat. Environment:
#   SLUICE_BROKERS (default 127.0.0.1:9092), SLUICE_ADMIN (default
#   http://127.0.0.1:9644), SLUICE (the sluice binary, default: on PATH),
#   PLUGINS (folder of built plugins; default: build them here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
sluice="${SLUICE:-sluice}"
brokers="${SLUICE_BROKERS:-127.0.0.1:9092}"
export SLUICE_BROKERS="$brokers"

if [ -z "${PLUGINS:-}" ]; then
    (cd "$root" && cargo build --quiet --profile plugin --target wasm32-wasip2 \
        -p route-by-field -p filter-json -p map-json)
    PLUGINS="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip2/plugin"
fi

for topic in events views clicks purchases big-purchases alerts; do
    "$sluice" topic create "$topic" --partitions 2 >/dev/null
done

"$sluice" processor deploy router --wasm "$PLUGINS/route_by_field.wasm" \
    --input events --output views --output clicks --output purchases \
    --config field=kind --config route.view=views --config route.click=clicks \
    --config route.purchase=purchases >/dev/null
"$sluice" processor deploy big-spenders --wasm "$PLUGINS/filter_json.wasm" \
    --input purchases --output big-purchases --config field=amount --config gte=100 >/dev/null
"$sluice" processor deploy alerts --wasm "$PLUGINS/map_json.wasm" \
    --input big-purchases --output alerts --config select=user,amount \
    --config rename.user=customer --config set.alert=big-purchase >/dev/null

# Key each event by its user, so a user's events stay in order.
sed -E 's/^(.*"user":"([^"]+)".*)$/\2\t\1/' "$here/events.jsonl" |
    kcat -P -q -b "$brokers" -t events -K '\t' -X partitioner=murmur2_random

# Wait until the last processor has seen both big purchases.
for _ in $(seq 1 100); do
    done_count="$("$sluice" processor status alerts --format json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["records_in"])')"
    [ "$done_count" -ge 2 ] && break
    sleep 0.1
done

echo "alerts:"
kcat -C -q -e -b "$brokers" -t alerts -f '%k %s\n' | sort
echo
"$sluice" processor list
