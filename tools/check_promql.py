"""Parse every PromQL expression of alert rules (a Rules or PrometheusRule manifest) and Grafana
dashboards (JSON) with promql-parser; print the chaos_* metric names each file uses, as JSON.
Exit code 1, naming the file and the expression, on the first that does not parse.

    .tools/venv/bin/python tools/check_promql.py k8s/base/rules.yaml k8s/monitoring/*.json
"""

import json
import re
import sys
from pathlib import Path

import promql_parser
import yaml


def expressions(path: Path) -> list[str]:
    if path.suffix == ".json":
        dashboard = json.loads(path.read_text())
        return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    manifest = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in manifest["spec"]["groups"] for rule in group["rules"]]


def main() -> int:
    used = {}
    for name in sys.argv[1:]:
        path = Path(name)
        found = set()
        for expr in expressions(path):
            try:
                promql_parser.parse(expr.replace("$namespace", "x"))  # Grafana's variable
            except Exception as exc:  # the parser raises ValueError or its own errors
                print(f"{path}: not PromQL: {expr!r}: {exc}", file=sys.stderr)
                return 1
            found |= set(re.findall(r"\bchaos_[a-z_]+", expr))
        used[name] = sorted(found)
    print(json.dumps(used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
