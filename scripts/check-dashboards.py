#!/usr/bin/env python3
"""Static checks of the provisioned Grafana dashboards (issue 3).

For every dashboards/*.json:
  - validates it against Grafana's dashboard JSON schema vendored in
    dashboards/schema/dashboard.jsonschema (see dashboards/schema/README.md);
  - checks every datasource reference (panels, queries, template variables, annotations) names a
    uid provisioned in provisioning/datasources/*.yml, with the same type;
  - checks the adpulse conventions: unique dashboard uid, unique panel ids, timezone
    Asia/Kolkata, template variables platform, account and campaign.

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


def panels_of(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


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
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        problems.append("no dashboards/*.json found")
    for path in files:
        name = path.relative_to(ROOT)
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            problems.append(f"{name}: invalid JSON: {error}")
            continue
        for error in sorted(validator.iter_errors(dashboard), key=lambda e: list(e.absolute_path)):
            at = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{name}: schema: {at}: {error.message}")

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
