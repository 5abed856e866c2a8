"""OTLP decoding: protobuf and JSON bodies walked into the same neutral items."""
