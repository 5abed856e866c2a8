"""Transports: decode, call the ingest core, encode. Nothing else lives here."""
