"""Throw-away TLS certificates for private Redis servers (``--tls`` of
``with_cluster.py`` and ``with_sentinel.py``, and tests/integration/test_tls.py).

``make(where)`` writes, with ``openssl``, a CA and a server and a client
certificate for 127.0.0.1 / localhost, all signed by that CA and valid for two
days. ``Certificates`` then gives:

- ``server_args()``: the ``redis-server`` arguments that serve them
  (``--tls-auth-clients optional``: a client certificate is checked when one is
  given, not required);
- ``query()``: the URL query string a client passes (``ssl_ca_certs=…``);
- ``context()``: an ``ssl.SSLContext`` trusting the CA, for raw RESP probes;
- ``unsupported(server)``: why ``redis-server`` cannot serve TLS (built without
  it), found by trying; None when it can.

Standard library only, like the scripts that load it (by path).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from pathlib import Path

HOST = "127.0.0.1"


# P-256 keys: generated in milliseconds (an RSA-2048 key took ~1 s on a loaded host).
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    """The files ``make`` wrote: ``ca.crt``, ``server.{crt,key}``, ``client.{crt,key}``."""

    where: Path

    @property
    def ca(self) -> Path:
        return self.where / "ca.crt"

    def crt(self, name: str) -> Path:
        return self.where / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.where / f"{name}.key"

    def server_args(self, auth_clients: str = "optional") -> list[str]:
        """``redis-server`` arguments serving the server certificate (add
        ``--port 0 --tls-port P`` and, as needed, ``--tls-cluster yes`` /
        ``--tls-replication yes``). The same certificate is the server's client
        certificate when it connects to other nodes (replication, cluster bus)."""
        return [
            *("--tls-cert-file", str(self.crt("server"))),
            *("--tls-key-file", str(self.key("server"))),
            *("--tls-ca-cert-file", str(self.ca)),
            *("--tls-auth-clients", auth_clients),
        ]

    def conf(self, auth_clients: str = "optional") -> str:
        """``server_args`` as redis.conf lines (for sentinel.conf)."""
        args = self.server_args(auth_clients)
        return "".join(f"{k[2:]} {v}\n" for k, v in zip(args[::2], args[1::2], strict=True))

    def query(self, client_certificate: bool = False) -> str:
        """The URL query string (no ``?``) that makes a client trust the CA (and
        present the client certificate)."""
        files = {"ssl_ca_certs": self.ca}
        if client_certificate:
            files |= {"ssl_certfile": self.crt("client"), "ssl_keyfile": self.key("client")}
        return "&".join(f"{k}={quote(str(v))}" for k, v in files.items())

    def context(self) -> ssl.SSLContext:
        """A client context trusting the CA (raw RESP probes over TLS)."""
        return ssl.create_default_context(cafile=str(self.ca))


def make(where: Path) -> Certificates:
    """Write a CA and a server and a client certificate into ``where`` (see the
    module docstring). Raises ``FileNotFoundError`` when ``openssl`` is missing."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl is not on PATH")
    _openssl(
        *("req", "-x509", *_EC_KEY, "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=aioq test CA"),
        cwd=where,
    )
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl(
            *("req", *_EC_KEY, "-nodes", "-keyout", f"{name}.key"),
            *("-out", f"{name}.csr", "-subj", f"/CN=aioq test {name}"),
            cwd=where,
        )
        _openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "san.ext"),
            cwd=where,
        )
    return Certificates(where)


def wrap(sock: socket.socket, context: ssl.SSLContext | None) -> socket.socket:
    """``sock`` itself, or wrapped in TLS when a context is given."""
    return sock if context is None else context.wrap_socket(sock, server_hostname=HOST)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def unsupported(server: str, certs: Certificates, seconds: float = 10) -> str | None:
    """Why ``server`` (a redis-server binary) cannot serve TLS, by starting it on a
    TLS port and saying PING; None when it answered. A build without TLS refuses
    the ``tls-*`` options at start-up, which is what the reason quotes."""
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", HOST, "--save", ""]
        + ["--appendonly", "no", *certs.server_args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                return f"redis-server cannot serve TLS: {out.strip()[-300:]}"
            try:
                with (
                    socket.create_connection((HOST, port), timeout=1) as raw,
                    wrap(raw, certs.context()) as tls,
                ):
                    tls.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if tls.recv(16).startswith(b"+PONG"):
                        return None
            except OSError:
                time.sleep(0.05)
        return f"redis-server did not answer PING over TLS within {seconds:g} s"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
