"""Summarizes a `scripts/cluster-test faults` run: per phase, the requests sent, their outcomes
by kind, answers with a 5xx (or none at all), the slowest answer, and how many answered
requests have their audit event; then the tokens' signing keys and each replica's RSS over
time. Prints Markdown for docs/reliability.md; exits non-zero if an expectation failed."""

import collections
import json
import sys

KILL, PG_DOWN, PG_UP, ISSUER_BACK, SLOW, FAIL, END = 10, 32, 36, 48, 58, 64, 72
# A call that meets PostgreSQL's absence waits at most the pool's acquire timeout (2 s), then
# is answered; allowed a second more for scheduling on a busy machine.
FAIL_FAST_MS = 3000
PHASES = [(0, KILL, "baseline"), (KILL, 20, "replica SIGKILLed at 10 s"), (20, PG_DOWN, "Redis down 20-26 s"),
          (PG_DOWN, 42, "PostgreSQL down 32-36 s"), (42, ISSUER_BACK, "issuer gone from 42 s"),
          (ISSUER_BACK, SLOW, "issuer back at 48 s with a new signing key"),
          (SLOW, FAIL, "upstream times out 58-64 s"), (FAIL, END + 1, "upstream answers 500 from 64 s")]

run = json.load(open(sys.argv[1]))
results, kids, resigned = run["results"], run["kids"], run["resigned"]
audited = set()
for path in sys.argv[3:]:
    for line in open(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("request_id"):
            audited.add(record["request_id"])

print("| phase | requests | outcomes (kind: status × count) | 5xx or no answer | slowest answer | answered and audited |")
print("|---|---|---|---|---|---|")
for lo, hi, name in PHASES:
    rows = [r for r in results if lo <= r["t"] < hi]
    outcomes = collections.Counter((r["kind"], r["status"], r["tool_error"], r["rpc_error"] or "") for r in rows)
    text = ", ".join(f"{k}: {s}{' isError' if e else ''}{' ' + c if c else ''}×{n}" for (k, s, e, c), n in sorted(outcomes.items()))
    bad = sum(1 for r in rows if r["status"] >= 500 or r["status"] == 0)
    slowest = max((r["ms"] for r in rows if r["status"]), default=0)
    answered = [r for r in rows if r["request_id"]]
    found = sum(1 for r in answered if r["request_id"] in audited)
    print(f"| {name} | {len(rows)} | {text} | {bad} | {slowest} ms | {found} / {len(answered)} |")

renewed = [r for r in results if r["token"] == 2]
print()
print(f"Tokens: the first signed with `{kids[0]}`; the load signed in again {resigned.get('at', '?')} s into the run "
      f"(took {resigned.get('took', '?')} s) and got one signed with `{kids[-1]}`, used by {len(renewed)} requests, "
      f"{sum(1 for r in renewed if r['status'] in (200, 403))} answered as before the rotation.")

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
# except calls that need PostgreSQL while it is down (503 for an API-key check, the tool's
# error for a per-user call: stable codes, answered within the pool's timeout); once it is back
# they succeed again without a restart of Warden; every answered request outside the killed
# replica's phase has its audit event; each kind gets its answer; the rotated key's tokens are
# accepted; memory stays flat.
EXPECTED = {"allowed": 200, "denied": 403, "unauthenticated": 401, "api_key": 200, "per_user": 200}
problems = []
for lo, hi, name in PHASES:
    rows = [r for r in results if lo <= r["t"] < hi]
    if not rows:
        problems.append(f"{name}: no requests")
    if lo == KILL:
        continue
    for r in rows:
        # A request sent in the second before the kill may be in flight on the killed replica.
        if KILL - 1 <= r["t"] < KILL:
            continue
        at = f"{r['kind']} at {r['t']} s"
        if r["status"] and r["ms"] > FAIL_FAST_MS and not SLOW - 1 <= r["t"]:
            problems.append(f"{name}: {at} answered after {r['ms']} ms")
        # While PostgreSQL is down (and the second after, while pools reconnect), a call that
        # needs it fails fast with a stable code, and is audited.
        db_failure = (r["kind"] == "api_key" and r["status"] == 503) or (r["kind"] == "per_user" and r["status"] == 200 and r["tool_error"])
        if PG_DOWN <= r["t"] < PG_UP + 1 and db_failure:
            if r["request_id"] and r["request_id"] not in audited:
                problems.append(f"{name}: request {r['request_id']} answered but not audited")
            continue
        if r["status"] != EXPECTED[r["kind"]]:
            problems.append(f"{name}: {at} answered {r['status']}, not {EXPECTED[r['kind']]}")
        if r["request_id"] and r["request_id"] not in audited:
            problems.append(f"{name}: request {r['request_id']} answered but not audited")
        # A failing upstream is the tool's error, never the gateway's; a healthy one is never.
        # (A call sent within half a second of the switch may meet either upstream.)
        if r["status"] == 200 and r["kind"] == "allowed" and abs(r["t"] - SLOW) >= 0.5 and r["tool_error"] != (r["t"] >= SLOW):
            problems.append(f"{name}: {at}, isError {r['tool_error']}")
        if r["status"] == 200 and r["kind"] == "per_user" and r["tool_error"]:
            problems.append(f"{name}: {at}, isError")
        if r["rpc_error"]:
            problems.append(f"{name}: {at}, JSON-RPC error {r['rpc_error']}")
down = [r for r in results if PG_DOWN + 1 <= r["t"] < PG_UP - 0.5 and r["kind"] == "api_key"]
if not any(r["status"] == 503 for r in down):
    problems.append(f"no API-key check met PostgreSQL's absence: {collections.Counter(r['status'] for r in down)}")
if len(kids) != 2 or kids[0] == kids[1]:
    problems.append(f"the issuer's key did not rotate: {kids}")
if len(renewed) < 20:
    problems.append(f"only {len(renewed)} requests carried the new key's token")
for replica, samples in rss.items():
    first, peak = samples[0][1], max(kb for _, kb in samples)
    if replica != "2" and peak > first * 1.5:
        problems.append(f"replica {replica}: RSS grew from {first} kB to {peak} kB")
if problems:
    print("\n".join(["", "FAILED:"] + problems[:20]), file=sys.stderr)
    sys.exit(1)
