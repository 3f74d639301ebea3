"""switchgear's observability assets, generated from one Python source of truth.

``python -m tools.observability`` (re)writes:

* ``alerts/switchgear-alerts.yaml`` — alerting and recording rules (:mod:`.rules`);
* ``grafana/dashboards/*.json`` — overview, breakers and pools dashboards (:mod:`.dashboards`);
* ``grafana/provisioning/{datasources,dashboards}/switchgear.yaml`` (:mod:`.provisioning`);
* ``docs/runbooks.md`` and ``docs/dashboards.md`` (:mod:`.docs`).

``--check`` writes nothing and exits 1 listing stale files. Thresholds live in
:mod:`.config`; the metric names every query may use in :mod:`.catalog`. The promtool tests
in ``alerts/tests/`` are written by hand; ``tests/promtool_lint.py`` holds them to
their structure.
"""

from __future__ import annotations

from .dashboards import PanelQuery, annotation_queries, panel_queries, substitute, variable_queries

__all__ = ["PanelQuery", "annotation_queries", "panel_queries", "substitute", "variable_queries"]
