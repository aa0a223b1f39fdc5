#!/usr/bin/env python3
"""Pages per day: a day of the demo's /metrics, through the alert rules (promtool) and the
Alertmanager routes (simulated), counted as the notifications each receiver would get.

    scripts/pages-per-day.py --scrapes DIR --day-start UNIX --rules FILE... --alertmanager FILE

1. `--scrapes DIR`: /metrics bodies of one adpulse run (the demo sped up; each body's
   `adpulse_snapshot_timestamp_seconds` says which simulated instant it shows). They are laid on
   a 5-minute grid from `--day-start` (the IST midnight the day starts at) for `--hours`: each
   grid point takes the newest body at or before it. Timestamps on the simulated clock are made
   relative to the day (promtool's clock starts at 0); wall-clock ones (the KPI loop's render time,
   the last poll) are set to the grid point, as in a real day they are fresh. `up` is 1 for every
   job the rules know, and Prometheus/Alertmanager report no failures: this counts the money and
   model alerts of a healthy installation, not outages.
2. promtool (`promtool test rules`) evaluates the rule files every minute over that day; at every
   grid point each alert is asked for with no expected alerts, so promtool lists what fires
   (`got:`), after `for` and `keep_firing_for`.
3. The firing alerts go through the Alertmanager configuration: the route tree (`continue`,
   inherited `group_by`, timers), `inhibit_rules`, `mute_time_intervals` (in their location),
   `group_wait` (the first message at the first flush), `group_interval` flushes (every grid
   step) that send when a group's alerts change (a resolved alert counts when the receiver has
   `send_resolved`), and `repeat_interval`. A notification is one message per receiver.

A page is a notification to a receiver that emails the marketing lead (`to` with
`marketing-lead`) or posts to the WhatsApp bridge. Prints one table (receiver, notifications,
pages) and the alerts behind them.
"""

import argparse
import collections
import datetime
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

STEP_S = 300


def parse_duration(s):
    if s is None:
        return None
    total = 0
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w)", str(s)):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[u]
    return total


def parse_body(text):
    """Samples of an exposition body: {series text: value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            continue
    return out


def load_grid(scrapes, day_start, hours):
    bodies = []
    for p in sorted(pathlib.Path(scrapes).glob("*.prom")):
        s = parse_body(p.read_text())
        t = s.get("adpulse_snapshot_timestamp_seconds")
        if t is not None:
            bodies.append((t, s))
    bodies.sort(key=lambda b: b[0])
    if not bodies:
        sys.exit(f"no /metrics body with adpulse_snapshot_timestamp_seconds in {scrapes}")
    n = hours * 3600 // STEP_S
    grid, j = [], -1
    for k in range(n):
        t = day_start + k * STEP_S
        while j + 1 < len(bodies) and bodies[j + 1][0] <= t:
            j += 1
        grid.append(bodies[j][1] if j >= 0 else None)
    covered = sum(1 for g in grid if g is not None)
    last = bodies[-1][0]
    return grid, covered, last


def series_values(grid, day_start, hours):
    sim_end = day_start + hours * 3600 + 86400
    names = sorted({k for g in grid if g for k in g})
    out = {}
    for name in names:
        vals = []
        for k, g in enumerate(grid):
            if g is None or name not in g:
                vals.append("_")
                continue
            v = g[name]
            if "_timestamp_seconds" in name.split("{")[0] and v > 0:
                # simulated clock: relative to the day; wall clock (far past the simulated day): fresh
                v = (v - day_start) if v < sim_end else k * STEP_S
            vals.append(repr(v))
        out[name] = vals
    return out


def promtool_alerts(rule_files, values, n):
    """{grid index: [labels dict]} of the alerts firing at each grid point."""
    names = []
    for f in rule_files:
        for g in yaml.safe_load(pathlib.Path(f).read_text())["groups"]:
            names += [r["alert"] for r in g["rules"] if "alert" in r]
    names = sorted(set(names))
    extra = {f'up{{job="{j}"}}': ["1"] * n for j in ("adpulse", "questdb", "prometheus", "alertmanager")}
    zero = ["0"] * n
    extra.update({
        "prometheus_notifications_alertmanagers_discovered": ["1"] * n,
        "prometheus_notifications_errors_total": zero,
        'prometheus_rule_evaluation_failures_total{rule_group="adpulse"}': zero,
        'alertmanager_notifications_failed_total{integration="email"}': zero,
    })
    series = [{"series": s, "values": " ".join(v)} for s, v in {**values, **extra}.items()]
    tests = [{"eval_time": f"{k * STEP_S}s", "alertname": a, "exp_alerts": []}
             for k in range(n) for a in names]
    doc = {"rule_files": [str(pathlib.Path(f).resolve()) for f in rule_files],
           "evaluation_interval": "1m",
           "tests": [{"interval": f"{STEP_S}s", "input_series": series, "alert_rule_test": tests}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        yaml.safe_dump(doc, fh, allow_unicode=True, width=1 << 20)
        path = fh.name
    run = subprocess.run(["promtool", "test", "rules", path], capture_output=True, text=True)
    text = run.stdout + run.stderr
    if "FAILED" not in text and run.returncode != 0:
        sys.exit(f"promtool did not run the scenario:\n{text[-3000:]}")
    firing = collections.defaultdict(list)
    cur = None
    for line in text.splitlines():
        m = re.search(r"alertname: (\S+), time: (\S+?),", line)
        if m:
            cur = int(parse_duration(m.group(2)) // STEP_S)
            continue
        m = re.search(r"Labels:\{(.*)\}", line)
        if m and cur is not None:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
            firing[cur].append(labels)
    return firing, names


def matcher(m):
    name, op, value = re.match(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$', m).groups()
    if op == "=":
        return lambda l: l.get(name, "") == value
    if op == "!=":
        return lambda l: l.get(name, "") != value
    if op == "=~":
        return lambda l: re.fullmatch(value, l.get(name, "")) is not None
    return lambda l: re.fullmatch(value, l.get(name, "")) is None


def matches(ms, labels):
    return all(matcher(m)(labels) for m in ms or [])


KEYS = ("receiver", "group_by", "group_wait", "group_interval", "repeat_interval")


def routes_for(route, labels, parent=None, path="0"):
    node = dict(parent or {})
    for k in KEYS:
        if k in route:
            node[k] = route[k]
    node["mute"] = route.get("mute_time_intervals", [])
    node["path"] = path
    out = []
    for i, child in enumerate(route.get("routes", [])):
        if matches(child.get("matchers"), labels):
            out += routes_for(child, labels, node, f"{path}.{i}")
            if not child.get("continue"):
                break
    return out or [node]


def muted(intervals, names, when_utc):
    for name in names:
        for ti in intervals.get(name, []):
            loc = datetime.timezone.utc
            if ti.get("location") == "Asia/Kolkata":
                loc = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
            local = when_utc.astimezone(loc)
            minute = local.hour * 60 + local.minute
            for r in ti.get("times", []):
                a = [int(x) for x in r["start_time"].split(":")]
                b = [int(x) for x in r["end_time"].split(":")]
                if a[0] * 60 + a[1] <= minute < b[0] * 60 + b[1]:
                    return True
    return False


def inhibited(target, firing, rules):
    for r in rules:
        if not matches(r.get("target_matchers"), target):
            continue
        for src in firing:
            if src is target or not matches(r.get("source_matchers"), src):
                continue
            if all(src.get(e, "") == target.get(e, "") for e in r.get("equal", [])):
                return True
    return False


def simulate(am, firing, n, day_start):
    route = am["route"]
    intervals = {t["name"]: t["time_intervals"] for t in am.get("time_intervals", []) + am.get("mute_time_intervals", [])}
    receivers = {r["name"]: r for r in am["receivers"]}
    groups = {}  # key -> state
    sent = collections.Counter()
    why = collections.defaultdict(collections.Counter)
    for k in range(n):
        now = firing.get(k, [])
        live = [a for a in now if not inhibited(a, now, am.get("inhibit_rules", []))]
        by_group = collections.defaultdict(set)
        meta = {}
        for a in live:
            for node in routes_for(route, a):
                gb = node.get("group_by", [])
                gkey = tuple(a.get(x, "") for x in gb) if gb != ["..."] else tuple(sorted(a.items()))
                key = (node["path"], node["receiver"], gkey)
                by_group[key].add(tuple(sorted(a.items())))
                meta[key] = node
        for key in set(by_group) | set(groups):
            st = groups.setdefault(key, {"notified": frozenset(), "last": None, "node": meta.get(key)})
            if meta.get(key):
                st["node"] = meta[key]
            node = st["node"]
            cur = frozenset(by_group.get(key, set()))
            rcv = receivers[node["receiver"]]
            send_resolved = any(c.get("send_resolved", c.get("send_resolved", True))
                                for kind in ("email_configs", "webhook_configs", "slack_configs")
                                for c in rcv.get(kind, []))
            resolved = st["notified"] - cur
            repeat = parse_duration(node.get("repeat_interval", "4h"))
            changed = bool(cur - st["notified"]) or (bool(resolved) and send_resolved)
            due = bool(cur) and st["last"] is not None and (k - st["last"]) * STEP_S >= repeat
            when = datetime.datetime.fromtimestamp(day_start + k * STEP_S, datetime.timezone.utc)
            if (changed or due) and not muted(intervals, node.get("mute", []), when):
                sent[node["receiver"]] += 1
                for a in (cur or resolved):
                    why[node["receiver"]][dict(a).get("alertname", "?")] += 1
                st["notified"], st["last"] = cur, k
            if not cur and not st["notified"] - cur:
                groups.pop(key, None)
            elif not cur and resolved and not send_resolved:
                groups.pop(key, None)
    return sent, why, receivers


def is_page(receiver):
    emails = [c.get("to", "") for c in receiver.get("email_configs", [])]
    hooks = [c.get("url", "") for c in receiver.get("webhook_configs", [])]
    return any("marketing-lead" in e for e in emails) or any("9097" in u or "whatsapp" in u.lower() for u in hooks)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrapes", required=True)
    ap.add_argument("--day-start", type=int, required=True, help="unix time the day starts (IST midnight)")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--rules", nargs="+", required=True)
    ap.add_argument("--alertmanager", required=True)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    grid, covered, last = load_grid(a.scrapes, a.day_start, a.hours)
    n = a.hours * 3600 // STEP_S
    values = series_values(grid, a.day_start, a.hours)
    firing, names = promtool_alerts(a.rules, values, n)
    am = yaml.safe_load(pathlib.Path(a.alertmanager).read_text())
    sent, why, receivers = simulate(am, firing, n, a.day_start)
    print(f"## {a.label}: {covered} of {n} five-minute points covered by the scrapes "
          f"({covered * STEP_S / 3600:.1f} h), {len(values)} series, {len(names)} alerts")
    print("| receiver | notifications | pages to the marketing lead | alerts behind them |")
    print("|---|---|---|---|")
    pages = 0
    for r in sorted(receivers):
        c = sent.get(r, 0)
        p = c if is_page(receivers[r]) else 0
        pages += p
        top = ", ".join(f"{k} {v}" for k, v in why[r].most_common(6))
        print(f"| {r} | {c} | {p} | {top} |")
    print(f"| **all** | **{sum(sent.values())}** | **{pages}** | |")


if __name__ == "__main__":
    main()
