"""The example alert rules and Grafana dashboard (deploy/) are valid, and name only series /metrics serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/provisioner.json"
# Where the series are declared: the scrape-time collector and the in-process counters.
SOURCES = (ROOT / "config/metrics.py", ROOT / "core/metrics.py")
SERIES = re.compile(r"\bprovisioner_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def declared() -> set[str]:
    return {name for path in SOURCES for name in re.findall(r'"(provisioner_[a-z_]+)"', path.read_text())}


def unknown_series(expr: str) -> set[str]:
    names = set()
    for name in SERIES.findall(expr):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in declared():
                name = name.removesuffix(suffix)
        names.add(name)
    return names - declared()


def promtool_check(path: Path) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: bash .ci/apt-install (Debian's prometheus package)"
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_the_alert_rules_pass_promtool_and_each_says_what_it_is():
    result = promtool_check(RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "ProvisionerInstallFailuresRising",
        "ProvisionerQueueBackingUp",
        "ProvisionerWorkerHeartbeatStale",
        "ProvisionerBmcErrors",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert unknown_series(rule["expr"]) == set(), rule["alert"]


def test_the_dashboard_queries_parse_and_name_served_series(tmp_path):
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        assert unknown_series(expr) == set(), expr
    # promtool has no offline query check; recording rules with the same expressions get the same parser.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelt_series_is_caught():
    assert unknown_series("rate(provisioner_bmc_errors_total[5m])") == set()
    assert unknown_series("provisioner_queue_depht > 3") == {"provisioner_queue_depht"}
