#!/usr/bin/env python3
"""Validate docker-compose.yml against the compose-spec JSON schema (vendored in
deploy/compose-spec/, from the compose-spec project), and the checks the schema cannot make:
every healthcheck uses a command its image ships (no curl in QuestDB's image), no service
reaches another over loopback, and every bind-mounted file or folder exists (secrets.example/
stands in for secrets/). Needs python3 with PyYAML and jsonschema. There is no Docker engine
here, so the file is validated, not run."""
import json, pathlib, sys
import jsonschema, yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
schema = json.loads((root / "deploy/compose-spec/compose-spec.json").read_text())
errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in
          jsonschema.Draft7Validator(schema).iter_errors(compose)]
# what each image has for a health check (curl absent from questdb/questdb: questdb#2873)
tools = {"questdb": {"bash"}, "adpulse": {"adpulse"}, "prometheus": {"wget"},
         "alertmanager": {"wget"}, "grafana": {"wget"}}
for name, svc in compose["services"].items():
    test = svc.get("healthcheck", {}).get("test")
    if not test:
        errors.append(f"services/{name}: no healthcheck")
        continue
    exe = test[1] if test[0] == "CMD" else test[1].split()[0]
    if exe not in tools.get(name, set()):
        errors.append(f"services/{name}: healthcheck runs {exe!r}, not in the image ({tools.get(name)})")
    for key, val in svc.get("environment", {}).items():
        if any(h in str(val) for h in ("127.0.0.1", "localhost")):
            errors.append(f"services/{name}/environment/{key}: loopback {val!r}: use the service name")
    for vol in svc.get("volumes", []):
        src = vol.split(":")[0]
        if src.startswith("."):
            p = root / src.replace("./secrets", "./secrets.example", 1)
            if not p.exists():
                errors.append(f"services/{name}/volumes: {src} does not exist")
for e in errors:
    print("docker-compose.yml:", e, file=sys.stderr)
print(f"docker-compose.yml: {len(compose['services'])} services, {len(errors)} problems")
sys.exit(1 if errors else 0)
