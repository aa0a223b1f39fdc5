#!/usr/bin/env python3
"""Static checks of the provisioned Grafana dashboards (issue 3).

For every dashboards/*.json:
  - validates it against Grafana's dashboard JSON schema vendored in
    dashboards/schema/dashboard.jsonschema (see dashboards/schema/README.md);
  - checks every datasource reference (panels, queries, template variables, annotations) names a
    uid provisioned in provisioning/datasources/*.yml, with the same type;
  - checks the adpulse conventions: unique dashboard uid, unique panel ids, timezone
    Asia/Kolkata, template variables platform, account and campaign;
  - and the conventions of issue 13 (each one fails on the dashboards before it): a money unit
    on every money field; no `bucket = 'hour'` filter on a range longer than the days hour rows
    are complete; every shown variable used by every panel, or the panel marked "Business total";
    no area sparkline on instant queries; `noValue` on every stat; refresh 15-30 s; forecasts
    shown into the future; campaign tables linked to the action center; losses in a fixed red;
    one threshold set per KPI.

`--dir DIR` checks the dashboards of another directory (e.g. an older version).

Needs Python 3.11 and `jsonschema` (pip install jsonschema). Exits 1 on any problem.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
SCHEMA = DASHBOARDS / "schema" / "dashboard.jsonschema"
DATASOURCES = ROOT / "provisioning" / "datasources"
REQUIRED_VARIABLES = ("platform", "account", "campaign")
TIMEZONE = "Asia/Kolkata"
# Datasources Grafana always has; they are not provisioned.
BUILT_IN_UIDS = {"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana"}


def provisioned_datasources() -> dict[str, str]:
    """uid -> type from the provisioning files.

    A deliberately small reader (the stdlib has no YAML): it takes `uid:` and `type:` keys of each
    `- name:` item of the `datasources:` list, which is how our file is written.
    """
    found: dict[str, str] = {}
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        current: dict[str, str] = {}
        items = []
        in_list = False
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].rstrip()
            if not line:
                continue
            if re.match(r"^datasources:\s*$", line):
                in_list = True
                continue
            if re.match(r"^\S", line):
                in_list = False
                continue
            if not in_list:
                continue
            m = re.match(r"^  - (\w+):\s*(.*)$", line)
            if m:
                current = {}
                items.append(current)
                current[m.group(1)] = m.group(2).strip().strip("'\"")
                continue
            m = re.match(r"^    (\w+):\s*(.*)$", line)
            if m and items:
                current[m.group(1)] = m.group(2).strip().strip("'\"")
        for item in items:
            if "uid" not in item or "type" not in item:
                raise SystemExit(f"{path}: datasource {item.get('name')!r} lacks a fixed uid or type")
            found[item["uid"]] = item["type"]
    return found


def datasource_refs(dashboard: dict):
    """Yield (where, datasource) for every datasource reference in the dashboard."""
    for panel in dashboard.get("panels", []):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if "datasource" in panel:
            yield where, panel["datasource"]
        for target in panel.get("targets", []):
            if "datasource" in target:
                yield f"{where} target {target.get('refId')}", target["datasource"]
        for sub in panel.get("panels", []):  # collapsed rows
            yield from datasource_refs({"panels": [sub]})
    for var in dashboard.get("templating", {}).get("list", []):
        if "datasource" in var:
            yield f"variable {var.get('name')!r}", var["datasource"]
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "datasource" in ann:
            yield f"annotation {ann.get('name')!r}", ann["datasource"]


# The vendored schema only admits the built-in Grafana annotation shape for an annotation's
# `target` (upstream: "TODO: this should be a regular DataQuery"), while Grafana runs a data-source
# annotation's target as that data source's query. For annotations on our provisioned
# datasources, those schema errors are replaced by check_datasource_annotations below.
PROM_ANNOTATION_KEYS = {"expr", "step", "titleFormat", "textFormat", "tagKeys", "useValueForTime"}


def datasource_annotation_error(dashboard: dict, error) -> bool:
    path = list(error.absolute_path)
    if len(path) < 3 or path[:2] != ["annotations", "list"]:
        return False
    ann = dashboard["annotations"]["list"][path[2]]
    if ann.get("builtIn") or ann.get("datasource", {}).get("uid") in BUILT_IN_UIDS:
        return False
    if len(path) >= 4 and path[3] == "target":
        return True
    return len(path) == 3 and error.validator == "additionalProperties" and \
        set(re.findall(r"'(\w+)'", error.message)) <= PROM_ANNOTATION_KEYS


def check_datasource_annotations(dashboard: dict):
    for ann in dashboard.get("annotations", {}).get("list", []):
        if ann.get("builtIn") or ann.get("datasource", {}).get("uid") in BUILT_IN_UIDS:
            continue
        target = ann.get("target")
        kind = ann.get("datasource", {}).get("type")
        if not isinstance(target, dict) or not target.get("refId"):
            yield f"annotation {ann.get('name')!r}: needs a target with a refId"
        elif kind == "prometheus" and not target.get("expr"):
            yield f"annotation {ann.get('name')!r}: Prometheus target without expr"
        elif kind == "grafana-postgresql-datasource" and not target.get("rawSql"):
            yield f"annotation {ann.get('name')!r}: SQL target without rawSql"
        extra = set(ann) - {"datasource", "enable", "hide", "iconColor", "name", "target", "filter"} - PROM_ANNOTATION_KEYS
        if extra:
            yield f"annotation {ann.get('name')!r}: unknown keys {sorted(extra)}"


def panels_of(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


# ---------------------------------------------------------------- conventions of issue 13
MONEY_UNITS = {"currencyINR", "locale"}  # locale: Indian grouping (docs/dashboards.md, "INR")
MONEY_WORDS = re.compile(r"(?i)\b(spend|revenue|amount|loss\w*|profit|cpa|conversion_value|refund\w*|aov|yhat)\b|₹|INR")
RATIO_TITLE = re.compile(r"(?i)\b(roas|roi|mer|ctr|cr|rate|conversion|score|ratio|heat map|count|orders|campaigns:)\b")
LIVE_REFRESH = {"15s", "20s", "30s"}
SCOPE_VARIABLES = ("platform", "account", "campaign", "traffic_source")
# Hour rows are complete only for the recent days the platforms report by hour (Meta's and Google
# Ads' `hourly_days`, 2 by default); older days have day rows only, GA4 may have day rows only.
COMPLETE_HOURS_DAYS = 2


def queries(panel: dict) -> list[str]:
    return [t.get("rawSql") or t.get("expr") or "" for t in panel.get("targets", [])]


def range_days(expr: str) -> float | None:
    m = re.fullmatch(r"now-(\d+)([mhdwM])(/d)?", expr or "")
    if not m:
        return None
    n, u = int(m.group(1)), m.group(2)
    return n * {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "M": 30}[u]


def panel_units(panel: dict) -> set[str]:
    units = {panel.get("fieldConfig", {}).get("defaults", {}).get("unit")}
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in o.get("properties", []):
            if prop.get("id") == "unit":
                units.add(prop.get("value"))
    return {u for u in units if u}


def convention_problems(dashboard: dict) -> list[str]:
    out: list[str] = []
    uid = dashboard.get("uid", "")
    if dashboard.get("refresh") not in LIVE_REFRESH:
        out.append(f"refresh is {dashboard.get('refresh')!r}, want one of {sorted(LIVE_REFRESH)} (live dashboard)")
    # the scope selectors; panel-specific pickers (forecast, anomaly_series) are exempt
    shown = [v["name"] for v in dashboard.get("templating", {}).get("list", [])
             if v.get("hide", 0) == 0 and v.get("name") in SCOPE_VARIABLES]
    dash_from = range_days(dashboard.get("time", {}).get("from"))
    reads_forecasts = False
    for p in panels_of(dashboard):
        if p.get("type") == "row":
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        qs = queries(p)
        text = " ".join(qs)
        desc = p.get("description", "")
        reads_forecasts |= bool(re.search(r"\bFROM forecasts\b", text))
        # a unit on every money field
        if MONEY_WORDS.search(text + " " + p.get("title", "")) and not RATIO_TITLE.search(p.get("title", "")) \
                and p.get("type") in ("stat", "timeseries", "table", "bargauge", "barchart"):
            if not panel_units(p) & MONEY_UNITS:
                out.append(f"{where}: money without a money unit (units {sorted(panel_units(p))}, want one of {sorted(MONEY_UNITS)})")
        # tiles and tables show exact amounts: a currency unit scales them (4,04,436 INR as "₹404K")
        scaled = {u for u in panel_units(p) if u == "currencyINR" or u.startswith("currency:")}
        if p.get("type") in ("stat", "table") and scaled:
            out.append(f"{where}: {sorted(scaled)} on a {p['type']} prints 4,04,436 INR as \"₹404K\"; "
                       "tiles and tables use `locale` with `decimals` (docs/dashboards.md, INR)")
        # no hour-only filter on ranges longer than the complete-hours window
        bounded = re.search(r"dateadd\('d', -([12]), ", text)  # the query limits itself to complete hours
        if "bucket = 'hour'" in text and not bounded:
            days = range_days(p.get("timeFrom") and f"now-{p['timeFrom']}") if p.get("timeFrom") else dash_from
            if days is None or days > COMPLETE_HOURS_DAYS:
                out.append(f"{where}: reads bucket = 'hour' over {p.get('timeFrom') or dashboard.get('time', {}).get('from')}, "
                           f"longer than the {COMPLETE_HOURS_DAYS} days hour rows are complete: read day rows or set timeFrom")
        # every shown variable used, or the panel marked as a business total
        unused = [v for v in shown if not re.search(r"\$(\{)?" + re.escape(v) + r"\b", text)]
        unused = [v for v in unused if f"Ignores the {v} selector" not in desc]
        if unused and not desc.startswith("Business total"):
            out.append(f"{where}: ignores the shown variable(s) {unused}: use them, or start the description with 'Business total'")
        if p.get("type") == "stat":
            graph = p.get("options", {}).get("graphMode", "area")
            ranged = any(t.get("range") or (t.get("datasource", {}).get("uid") == "adpulse-questdb"
                                             and t.get("format") == "time_series") for t in p.get("targets", []))
            if graph == "area" and not ranged:
                out.append(f"{where}: area sparkline on instant queries (empty area): use range queries or graphMode none")
            if "noValue" not in p.get("fieldConfig", {}).get("defaults", {}):
                out.append(f"{where}: headline stat without noValue (say what an empty result means)")
        # links from campaign tables to the action center
        if p.get("type") == "table" and re.search(r"campaign_id", text) and uid != "adpulse-health" \
                and not re.search(r"FROM anomalies", text):
            links = json.dumps(p.get("fieldConfig", {}))
            if "${action_center_url}/campaigns/${__data.fields.campaign_id}" not in links:
                out.append(f"{where}: campaign table without a data link to the action center "
                           "(${action_center_url}/campaigns/${__data.fields.campaign_id})")
        # one colour role per quantity: losses red, never the palette's first colour (green)
        if p.get("type") == "timeseries" and re.search(r"(?i)loss", text + p.get("title", "")):
            colored = any(o.get("matcher", {}).get("id") == "byRegexp" and "loss" in o["matcher"].get("options", "")
                          and any(pr.get("id") == "color" for pr in o.get("properties", []))
                          for o in p.get("fieldConfig", {}).get("overrides", []))
            if not colored and p.get("fieldConfig", {}).get("defaults", {}).get("color", {}).get("mode") not in ("fixed", "shades"):
                out.append(f"{where}: loss series without a fixed red colour or shades of red (palette-classic draws the first series green)")
    if reads_forecasts and not str(dashboard.get("time", {}).get("to", "")).startswith("now+"):
        out.append(f"time range ends at {dashboard.get('time', {}).get('to')!r}: forecasts need now+<horizon>")
    if "${action_center_url}" in json.dumps(dashboard) and not any(
            v.get("name") == "action_center_url" for v in dashboard.get("templating", {}).get("list", [])):
        out.append("uses ${action_center_url} without defining the variable")
    return out


def kpi_of(query: str) -> str | None:
    """The KPI a query shows: its first adpulse metric, today's and the rolling windows' forms
    counted as one (ROI today and ROI over 10 days are the same ratio, judged alike)."""
    m = re.search(r"adpulse_[a-z0-9_]+", query)
    if not m:
        return None
    return re.sub(r"_(today|rolling)(?=_ratio$|$)", "", m.group(0))


def threshold_problems(dashboards: dict[str, dict]) -> list[str]:
    """One threshold set per KPI: every panel (stat, time series, gauge...) that draws thresholds
    for a KPI uses the same step values. A panel with only the base step draws none and is left
    out; the KPI is the first query's metric (scope kept: a campaign's loss rate is not the
    business's), with its today / rolling forms as one."""
    seen: dict[str, tuple[str, list]] = {}
    out = []
    for name, d in dashboards.items():
        for p in panels_of(d):
            if not p.get("targets"):
                continue
            key = kpi_of(queries(p)[0])
            if key is None:
                continue
            steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps") or []
            values = [s.get("value") for s in steps if s.get("value") is not None]
            if not values:
                continue
            if key in seen and seen[key][1] != values:
                out.append(f"{name}: panel {p.get('id')} {p.get('title')!r}: thresholds {values} of {key} "
                           f"differ from {seen[key][1]} in {seen[key][0]}")
            seen.setdefault(key, (f"{name} panel {p.get('id')}", values))
    return out


FESTIVALS = ROOT / "dashboards" / "festivals.csv"
FESTIVAL_ANNOTATION = "Festivals & sales"
# The dashboards that show money, where a festival or a sale explains a jump.
MONEY_DASHBOARDS = ("crisis.json", "campaigns.json", "forecasts.json")
FESTIVAL_KINDS = ("festival", "sale", "occasion")


def read_festivals(path: Path = FESTIVALS) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """The rows of festivals.csv (name, start, end, kind), and what is wrong with it."""
    import csv
    import datetime as dt
    rows, problems = [], []
    lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip() and not l.startswith("#")]
    reader = csv.reader(lines)
    header = next(reader, None)
    if header != ["name", "start", "end", "kind"]:
        return [], [f"{path.name}: header must be name,start,end,kind, got {header}"]
    for n, r in enumerate(reader, start=2):
        where = f"{path.name}: data row {n - 1}"
        if len(r) != 4:
            problems.append(f"{where}: want 4 fields, got {len(r)}: {r}")
            continue
        name, start, end, kind = (x.strip() for x in r)
        try:
            d0, d1 = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        except ValueError as e:
            problems.append(f"{where} ({name}): {e}")
            continue
        if d1 < d0:
            problems.append(f"{where} ({name}): ends {end} before it starts {start}")
        if not name:
            problems.append(f"{where}: no name")
        if kind not in FESTIVAL_KINDS:
            problems.append(f"{where} ({name}): kind {kind!r}, want one of {FESTIVAL_KINDS}")
        rows.append((name, d0.isoformat(), d1.isoformat(), kind))
    return rows, problems


def festival_sql(rows: list[tuple[str, str, str, str]]) -> str:
    """The annotation query: one literal row per event (region from the first IST midnight to the
    one after the last day), filtered to the dashboard's range. QuestDB runs it; no table needed."""
    import datetime as dt
    def ist_midnight_utc(day: str, plus_days: int) -> str:
        d = dt.date.fromisoformat(day) + dt.timedelta(days=plus_days - 1)
        return f"{d.isoformat()}T18:30:00.000000Z"
    def lit(s: str) -> str:
        return "'" + s.replace("'", "''") + "'"
    parts = [
        f"SELECT cast({lit(ist_midnight_utc(start, 0))} AS timestamp) AS time, "
        f"cast({lit(ist_midnight_utc(end, 1))} AS timestamp) AS timeend, {lit(name)} AS text, "
        f"{lit(kind)} AS tags FROM long_sequence(1)"
        for name, start, end, kind in rows
    ]
    return ("SELECT time, timeend, text, tags FROM (" + " UNION ALL ".join(parts) + ") "
            "WHERE time < $__timeTo() AND timeend > $__timeFrom() ORDER BY time")


def festival_annotation(rows) -> dict:
    return {
        "name": FESTIVAL_ANNOTATION,
        "enable": True,
        "hide": False,
        "iconColor": "purple",
        "datasource": {"type": "grafana-postgresql-datasource", "uid": "adpulse-questdb"},
        "target": {"refId": "Festivals", "rawQuery": True, "editorMode": "code", "format": "table",
                   "rawSql": festival_sql(rows)},
    }


def festival_problems(name: str, dashboard: dict, rows) -> list[str]:
    if Path(name).name not in MONEY_DASHBOARDS:
        return []
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("name") == FESTIVAL_ANNOTATION:
            if a.get("target", {}).get("rawSql") != festival_sql(rows):
                return [f"annotation {FESTIVAL_ANNOTATION!r} differs from dashboards/festivals.csv: "
                        "run python3 scripts/check-dashboards.py --sync-festivals"]
            return []
    return [f"no {FESTIVAL_ANNOTATION!r} annotation (a money dashboard): "
            "run python3 scripts/check-dashboards.py --sync-festivals"]


def sync_festivals() -> int:
    rows, problems = read_festivals()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for file in MONEY_DASHBOARDS:
        path = DASHBOARDS / file
        d = json.loads(path.read_text(encoding="utf-8"))
        anns = d.setdefault("annotations", {}).setdefault("list", [])
        new = festival_annotation(rows)
        for i, a in enumerate(anns):
            if a.get("name") == FESTIVAL_ANNOTATION:
                anns[i] = new
                break
        else:
            anns.append(new)
        path.write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {len(rows)} festival and sale rows into {path.relative_to(ROOT)}")
    return 0


def main() -> int:
    try:
        import jsonschema
    except ImportError:
        print("check-dashboards: needs the jsonschema package: pip install jsonschema", file=sys.stderr)
        return 1
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    datasources = provisioned_datasources()
    problems: list[str] = []
    uids: dict[str, Path] = {}
    global DASHBOARDS
    if sys.argv[1:] == ["--sync-festivals"]:
        return sync_festivals()
    festivals, festival_file_problems = read_festivals()
    problems.extend(festival_file_problems)
    if len(sys.argv) == 3 and sys.argv[1] == "--dir":  # check another copy (e.g. main's dashboards)
        DASHBOARDS = Path(sys.argv[2]).resolve()
    files = sorted(DASHBOARDS.glob("*.json"))
    loaded: dict[str, dict] = {}
    if not files:
        problems.append("no dashboards/*.json found")
    for path in files:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            problems.append(f"{name}: invalid JSON: {error}")
            continue
        for error in sorted(validator.iter_errors(dashboard), key=lambda e: list(e.absolute_path)):
            at = "/".join(str(p) for p in error.absolute_path) or "(root)"
            if datasource_annotation_error(dashboard, error):
                continue
            problems.append(f"{name}: schema: {at}: {error.message}")
        problems.extend(f"{name}: {m}" for m in check_datasource_annotations(dashboard))

        loaded[str(name)] = dashboard
        problems.extend(f"{name}: {m}" for m in convention_problems(dashboard))
        problems.extend(f"{name}: {m}" for m in festival_problems(str(name), dashboard, festivals))
        uid = dashboard.get("uid")
        if not uid:
            problems.append(f"{name}: no uid")
        elif uid in uids:
            problems.append(f"{name}: uid {uid!r} also used by {uids[uid].relative_to(ROOT)}")
        else:
            uids[uid] = path
        if dashboard.get("timezone") != TIMEZONE:
            problems.append(f"{name}: timezone is {dashboard.get('timezone')!r}, want {TIMEZONE!r}")
        variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
        for var in REQUIRED_VARIABLES:
            if var not in variables:
                problems.append(f"{name}: template variable {var!r} missing")

        ids = [p.get("id") for p in panels_of(dashboard)]
        if any(not isinstance(i, int) for i in ids):
            problems.append(f"{name}: every panel needs a fixed integer id")
        dupes = sorted({i for i in ids if isinstance(i, int) and ids.count(i) > 1})
        if dupes:
            problems.append(f"{name}: duplicate panel ids {dupes}")

        for where, ref in datasource_refs(dashboard):
            if not isinstance(ref, dict):
                problems.append(f"{name}: {where}: datasource must be a {{type, uid}} reference, got {ref!r}")
                continue
            ds_uid = ref.get("uid")
            if ds_uid in BUILT_IN_UIDS:
                continue
            if ds_uid not in datasources:
                problems.append(f"{name}: {where}: datasource uid {ds_uid!r} is not provisioned")
            elif ref.get("type") and ref["type"] != datasources[ds_uid]:
                problems.append(f"{name}: {where}: datasource {ds_uid!r} has type {datasources[ds_uid]!r}, "
                                f"the dashboard says {ref['type']!r}")

    problems.extend(threshold_problems(loaded))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check-dashboards: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-dashboards: OK ({len(files)} dashboards, {len(datasources)} provisioned datasources: "
          f"{', '.join(sorted(datasources))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
