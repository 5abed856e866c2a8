"""One bridge per port: the serving process (or the supervisor of ``--workers N``) claims each
port it will listen on before anything binds it, and holds the claim until it exits.

Why a claim: worker processes share their ports with ``SO_REUSEPORT``, and Linux lets any
later socket of the same user that also sets ``SO_REUSEPORT`` join the group; the kernel then
spreads connections over both bridges and billing is split between two databases. A claim is
two checks:
- an exclusive ``flock`` on ``<tmp>/tokenbridge-<uid>/port-<P>.lock`` (holding the claimer's
  pid): a second bridge of the same user is refused by name, also while both start at once;
- a probe bind of the port without ``SO_REUSEPORT`` (with ``SO_REUSEADDR``, so connections in
  TIME_WAIT do not count): it fails while any socket listens there, a bridge of another user
  or any other program, whatever options that socket set.
The probe is closed before the receivers bind; the lock stays. The lock is released by the
kernel when the process ends, however it ends.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from collector.startup import EXIT_UNREACHABLE, StartupError


@dataclass(frozen=True)
class Claim:
    setting: str
    """How the user set the port: ``--grpc-port``, ``tb.yaml: receivers.grpc_port``, ..."""
    host: str
    port: int


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"tokenbridge-{os.getuid()}"


class PortClaims:
    """The claims of one serving process; ``claim`` raises ``StartupError`` naming the port
    and, where it can be known, the process serving it."""

    def __init__(self) -> None:
        self._held: list[IO[str]] = []

    def claim(self, claims: list[Claim]) -> None:
        for c in claims:
            if c.port:
                self._lock(c)
        for c in claims:
            if c.port:
                _probe(c)

    def _lock(self, c: Claim) -> None:
        directory = lock_dir()
        directory.mkdir(mode=0o700, exist_ok=True)
        handle = (directory / f"port-{c.port}.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another tokenbridge"
            handle.close()
            raise _in_use(c, holder) from None
        handle.truncate(0)
        handle.write(f"tokenbridge (pid {os.getpid()})\n")
        handle.flush()
        self._held.append(handle)

    def release(self) -> None:
        for handle in self._held:
            handle.close()
        self._held.clear()


def _probe(c: Claim) -> None:
    family = socket.AF_INET6 if ":" in c.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((c.host, c.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(c, listener(c.port) or "another process") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(f"{c.setting}: cannot listen on {c.host}: no such local "
                                   "address; use 127.0.0.1, 0.0.0.0 or an address of this host",
                                   2) from None  # fmt: skip
            raise StartupError(f"{c.setting}: cannot listen on {c.host}:{c.port} "
                               f"({exc.strerror}); choose another port", 2) from None  # fmt: skip


def _in_use(c: Claim, holder: str) -> StartupError:
    return StartupError(
        f"{c.setting} {c.port}: port {c.port} is already in use by {holder}; stop it or "
        "choose another port", EXIT_UNREACHABLE,
    )  # fmt: skip


def listener(port: int) -> str | None:
    """``process <pid> (<command>)`` listening on TCP ``port``, when this user may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                text = " ".join(command.decode(errors="replace").split())
                return f"process {pid} ({text[:80]})"
        except OSError:
            continue
    return None
