"""The analytics example's input and its checks (run by run.sh).

    analytics.py produce WORK   generate the seeded input, produce it with
                                its timestamps, write the reference to WORK
    analytics.py check WORK     compare the outputs and state with it;
                                exit 1 on any difference

Needs confluent-kafka (tests/clients/python/.venv has it) and kcat;
reads SLUICE, SLUICE_BROKERS, SLUICE_ADMIN and REPARTITION (true|false) from
the environment.
"""

import collections
import json
import os
import random
import subprocess
import sys

BROKERS = os.environ.get("SLUICE_BROKERS", "127.0.0.1:9092")
SLUICE = os.environ.get("SLUICE", "sluice")
REPARTITION = os.environ.get("REPARTITION", "true") == "true"
START_MS = 1767225600000  # 2026-01-01T00:00:00Z
MINUTE_MS = 60_000
GAP_MS = 300_000  # sessionize's gap_ms
TOP_N = 3
PAGES = ["/home", "/search", "/product/1", "/product/2", "/product/3", "/cart", "/checkout", "/help"]
WEIGHTS = [30, 20, 12, 10, 8, 8, 4, 3]
USERS = [f"user-{i}" for i in range(1, 11)]
PARTITIONS = 3


def generate():
    """Seeded page views and clicks: each user has sessions of activity
    separated by more than twice the gap; within one, events a few seconds
    to a minute apart (far less than the gap)."""
    rng = random.Random(2026)
    views, clicks = [], []
    for user in USERS:
        t = START_MS + rng.randrange(0, 10 * MINUTE_MS)
        for _ in range(rng.randrange(1, 4)):
            for _ in range(rng.randrange(3, 15)):
                page = rng.choices(PAGES, WEIGHTS)[0]
                views.append((t, user, {"user": user, "page": page}))
                if rng.random() < 0.6:
                    clicks.append((t + 500, user, {"user": user, "page": page, "element": f"button-{rng.randrange(4)}"}))
                t += rng.randrange(2_000, 60_000)
            t += 2 * GAP_MS + rng.randrange(0, 10 * MINUTE_MS)
    views.sort(key=lambda r: (r[0], r[1]))
    clicks.sort(key=lambda r: (r[0], r[1]))
    return views, clicks


def reference(views, clicks):
    per_minute = collections.Counter()
    for t, user, value in views:
        minute = t - t % MINUTE_MS
        key = value["page"] if REPARTITION else f"{user}/{value['page']}"
        per_minute[f"{key}\t{minute}"] += 1
    sessions = []
    by_user = collections.defaultdict(list)
    for t, user, _ in clicks:
        by_user[user].append(t)
    for user, times in by_user.items():
        start = last = times[0]
        events = 1
        for t in times[1:]:
            if t - last < GAP_MS:
                last, events = t, events + 1
            else:
                sessions.append([user, start, last, events])
                start = last = t
                events = 1
        sessions.append([user, start, last, events])
    counts = collections.Counter(value["page"] for _, _, value in views)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
    top = [{"item": page, "count": count} for page, count in ranked]
    return {
        "views": len(views),
        "clicks": len(clicks),
        "per_minute": dict(per_minute),
        "sessions": sorted(sessions),
        "top": top,
    }


def produce(work):
    from confluent_kafka import Producer

    views, clicks = generate()
    producer = Producer({"bootstrap.servers": BROKERS, "partitioner": "murmur2_random", "acks": "all", "linger.ms": 20})
    for topic, records in (("page-views", views), ("clicks", clicks)):
        for t, user, value in records:
            producer.produce(topic, key=user, value=json.dumps(value, separators=(",", ":")), timestamp=t)
    # One click per partition far past the last session: stream time
    # passes every real session's end plus the gap, so all of them close.
    end = max(t for t, _, _ in clicks) + 4 * GAP_MS
    for partition in range(PARTITIONS):
        producer.produce("clicks", key="~end", value="{}", timestamp=end, partition=partition)
    if producer.flush(30) != 0:
        sys.exit("produce: not every record was delivered")
    with open(os.path.join(work, "reference.json"), "w") as file:
        json.dump(reference(views, clicks), file)
    print(f"produced {len(views)} page views and {len(clicks)} clicks")


def kcat(topic):
    """(key, value) of every record of topic, each partition in order."""
    out = subprocess.run(
        ["kcat", "-C", "-q", "-e", "-b", BROKERS, "-t", topic, "-f", "%k\t%s\n"],
        check=True, capture_output=True, text=True,
    ).stdout
    return [tuple(line.split("\t", 1)) for line in out.splitlines() if line]


def sluice_json(*args):
    out = subprocess.run([SLUICE, *args, "--format", "json"], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def check(work):
    with open(os.path.join(work, "reference.json")) as file:
        expected = json.load(file)
    wrong = []

    # (a) views per page per minute: the latest (largest) count of each
    # window (emit=update writes every update).
    got = {}
    for _, value in kcat("views-per-minute"):
        window = json.loads(value)
        key = f"{window['key']}\t{window['window_start']}"
        got[key] = max(got.get(key, 0), window["count"])
    if got != expected["per_minute"]:
        missing = sorted(set(expected["per_minute"].items()) - set(got.items()))[:5]
        wrong.append(f"views per minute differ: {len(got)} windows, expected {len(expected['per_minute'])}; e.g. {missing}")
    # The windows are still open (an hour of grace): the busiest key's are
    # in the store too, as `sluice processor state windows` shows them.
    busiest = max(expected["per_minute"].items(), key=lambda kv: (kv[1], kv[0]))
    key = busiest[0].split("\t")[0]
    windows = sluice_json("processor", "state", "windows", "views-per-minute", "counts", key)
    stored = {f"{key}\t{w['start']}": w["value"] for w in (windows or {}).get("windows", [])}
    wanted = {k: v for k, v in expected["per_minute"].items() if k.split("\t")[0] == key}
    if stored != wanted:
        wrong.append(f"the stored windows of {key} are {stored}, expected {wanted}")
    print(f"(a) views per page per minute: {len(got)} windows; busiest {busiest[0].replace(chr(9), ' @ ')}: {busiest[1]}")

    # (b) clicks per session.
    sessions = sorted(
        [s["key"], s["start"], s["end"], s["events"]]
        for s in (json.loads(value) for _, value in kcat("click-sessions"))
    )
    if sessions != expected["sessions"]:
        wrong.append(f"sessions differ: {len(sessions)}, expected {len(expected['sessions'])}")
    clicks = sum(s[3] for s in sessions)
    print(f"(b) click sessions: {len(sessions)} sessions, {clicks} clicks")

    # (c) running top pages: the latest output and the queried state.
    latest = [json.loads(value)["top"] for key, value in kcat("top-pages") if key == "top"]
    state = sluice_json("processor", "state", "get", "top-pages", "top", "top")
    queried = state["value"] if state else None
    if not latest or latest[-1] != expected["top"]:
        wrong.append(f"top pages output {latest[-1] if latest else None}, expected {expected['top']}")
    if queried != expected["top"]:
        wrong.append(f"top pages state {queried}, expected {expected['top']}")
    shown = ", ".join(f"{entry['item']} {entry['count']}" for entry in expected["top"])
    print(f"(c) top pages: {shown}")

    for line in wrong:
        print(f"WRONG: {line}")
    return not wrong


if __name__ == "__main__":
    command, work = sys.argv[1], sys.argv[2]
    if command == "produce":
        produce(work)
    elif command == "check":
        sys.exit(0 if check(work) else 1)
    else:
        sys.exit(f"unknown command {command}")
