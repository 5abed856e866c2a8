"""Exporters: where committed usage goes (SQL, and OpenTelemetry metrics)."""
