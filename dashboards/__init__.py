"""psymon's Grafana dashboards as code: built with the Grafana Foundation SDK, read-only SQL
over the store's views, generated into dashboards/json/ by ``python -m dashboards``
(docs/dashboards.md)."""
