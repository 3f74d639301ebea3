"""switchgear's observability assets, generated from one Python source of truth.

``python -m tools.observability`` (re)writes:

* ``alerts/switchgear-alerts.yaml`` — alerting and recording rules (:mod:`.rules`);
* ``grafana/dashboards/*.json`` — overview, breakers and pools dashboards (:mod:`.dashboards`);
* ``grafana/provisioning/{datasources,dashboards}/switchgear.yaml`` (:mod:`.provisioning`);
* ``docs/runbooks.md`` and ``docs/dashboards.md`` (:mod:`.docs`).

``--check`` writes nothing and exits 1 listing stale files. Thresholds live in
:mod:`.config`; the metric names every query may use in :mod:`.catalog`. The promtool tests
in ``alerts/tests/`` are written by hand; :mod:`.testlint` holds them to their structure.
"""

from __future__ import annotations

from .config import DEFAULT, Config
from .dashboards import (
    AnnotationQuery,
    PanelQuery,
    VariableQuery,
    annotation_queries,
    panel_queries,
    substitute,
    variable_queries,
)
from .generate import check, outputs, write
from .rules import alert_names, alerts, recording_rules

__all__ = [
    "DEFAULT",
    "AnnotationQuery",
    "Config",
    "PanelQuery",
    "VariableQuery",
    "alert_names",
    "alerts",
    "annotation_queries",
    "check",
    "outputs",
    "panel_queries",
    "recording_rules",
    "substitute",
    "variable_queries",
    "write",
]
