"""Decoding: protobuf and JSON bodies walked into the same neutral items."""
