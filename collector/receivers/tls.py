"""TLS for both receivers from one PEM certificate chain and key."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The HTTP receiver's context: TLS 1.2 or later, the chain and key from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def grpc_credentials(cert_file: Path, key_file: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key_file.read_bytes(), cert_file.read_bytes())])
