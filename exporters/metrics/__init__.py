"""Re-export of committed usage as OpenTelemetry metrics (Prometheus scrape and/or OTLP push)."""
