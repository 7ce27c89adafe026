"""Summarizes a `scripts/cluster-test faults` run: per phase, the requests sent, their outcomes
by kind, answers with a 5xx (or none at all), and how many answered requests have their audit
event; then each replica's RSS over time. Prints Markdown for docs/reliability.md."""

import collections
import json
import sys

PHASES = [(0, 10, "baseline"), (10, 20, "replica SIGKILLed at 10 s"), (20, 32, "Redis down 20-26 s"),
          (32, 42, "PostgreSQL restarted at 32 s"), (42, 50, "issuer gone from 42 s"),
          (50, 55, "upstream times out 50-55 s (issuer still gone)"), (55, 61, "upstream answers 500 from 55 s")]

results = json.load(open(sys.argv[1]))
audited = set()
for path in sys.argv[3:]:
    for line in open(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("request_id"):
            audited.add(record["request_id"])

print("| phase | requests | outcomes (kind: status × count) | 5xx or no answer | answered and audited |")
print("|---|---|---|---|---|")
for lo, hi, name in PHASES:
    rows = [r for r in results if lo <= r["t"] < hi]
    outcomes = collections.Counter((r["kind"], r["status"], r.get("tool_error", False)) for r in rows)
    text = ", ".join(f"{k}: {s}{' isError' if e else ''}×{n}" for (k, s, e), n in sorted(outcomes.items()))
    bad = sum(1 for r in rows if r["status"] >= 500 or r["status"] == 0)
    answered = [r for r in rows if r["request_id"]]
    found = sum(1 for r in answered if r["request_id"] in audited)
    print(f"| {name} | {len(rows)} | {text} | {bad} | {found} / {len(answered)} |")

rss = collections.defaultdict(list)
for line in open(sys.argv[2]):
    t, replica, kb = line.split()
    rss[replica].append((int(t), int(kb)))
print()
print("| replica | RSS samples (s: MiB) |")
print("|---|---|")
for replica, samples in sorted(rss.items()):
    print(f"| {replica} | " + ", ".join(f"{t}: {kb / 1024:.1f}" for t, kb in samples[::5]) + " |")

# What must hold, whatever the timing: outside the killed replica's phase no answer is a 5xx
# except PostgreSQL-backed API-key checks during its restart (503, a stable code); every
# answered request outside that phase has its audit event; memory stays flat.
problems = []
for lo, hi, name in PHASES:
    rows = [r for r in results if lo <= r["t"] < hi]
    if not rows:
        problems.append(f"{name}: no requests")
    if lo == 10:
        continue
    for r in rows:
        # A request sent in the second before the kill may be in flight on the killed replica.
        if 9 <= r["t"] < 10:
            continue
        bad = r["status"] >= 500 or r["status"] == 0
        if bad and not (lo == 32 and r["kind"] == "api_key" and r["status"] == 503):
            problems.append(f"{name}: {r['kind']} answered {r['status']} at {r['t']} s")
        if r["request_id"] and r["request_id"] not in audited:
            problems.append(f"{name}: request {r['request_id']} answered but not audited")
        # A failing upstream is the tool's error, never the gateway's; a healthy one is never.
        # (A call sent within half a second of the switch may meet either upstream.)
        if r["kind"] == "allowed" and r["status"] == 200 and abs(r["t"] - 50) >= 0.5 and r["tool_error"] != (r["t"] >= 50):
            problems.append(f"{name}: allowed call at {r['t']} s, isError {r['tool_error']}")
for replica, samples in rss.items():
    first, peak = samples[0][1], max(kb for _, kb in samples)
    if replica != "2" and peak > first * 1.5:
        problems.append(f"replica {replica}: RSS grew from {first} kB to {peak} kB")
if problems:
    print("\n".join(["", "FAILED:"] + problems[:20]), file=sys.stderr)
    sys.exit(1)
