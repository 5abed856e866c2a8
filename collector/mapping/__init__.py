"""Mapping: decoded items -> usage reports (fields, values, limits, catalog)."""
