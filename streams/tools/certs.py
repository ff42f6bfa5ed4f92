"""Certificates and secrets of a secured local stack, made with the ``openssl`` CLI.

``vitrine stack up --secure`` needs a CA that the Python clients trust (a PEM
file), a server certificate for ``127.0.0.1``/``localhost`` signed by it, the
same key pair as PEM files for Redis and as a PKCS12 keystore for the Kafka
broker, and random passwords. The ``cryptography`` package is not a
dependency, and Java's ``keytool`` cannot write the PEM key Redis reads, so
everything is done by ``openssl``, which Debian installs with
``ca-certificates``. Private keys and passwords are written with mode 0600.

Layout under ``<stack root>/tls/``::

    ca.pem  ca.key  server.pem  server.key  server.p12  *.password
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from pydantic import SecretStr

__all__ = ["StackCerts", "TlsError", "make_certs", "read_or_create_secret"]

logger = logging.getLogger(__name__)

#: Names and addresses the server certificate is valid for (clients verify the host).
SERVER_SAN = "DNS:localhost,IP:127.0.0.1"
VALID_DAYS = 825


class TlsError(RuntimeError):
    """The stack's certificates could not be made."""


@dataclasses.dataclass(frozen=True)
class StackCerts:
    """Paths of one stack's CA and server key material."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        """PEM CA certificate: what clients trust (``VITRINE_KAFKA_SSL_CAFILE``)."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def keystore(self) -> Path:
        """PKCS12 keystore with the server key and certificate chain (Kafka)."""
        return self.directory / "server.p12"

    @property
    def keystore_password_file(self) -> Path:
        return self.directory / "keystore.password"

    def complete(self) -> bool:
        """True when every file exists (a stack restart reuses them)."""
        files = (self.ca_file, self.ca_key, self.server_cert, self.server_key, self.keystore)
        return all(p.exists() for p in (*files, self.keystore_password_file))


def read_or_create_secret(path: Path, nbytes: int = 24) -> SecretStr:
    """The secret in ``path``, or a new random one written there with mode 0600."""
    if path.exists():
        return SecretStr(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return SecretStr(value)


def _openssl() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise TlsError("openssl is not on PATH; install it (apt-get install openssl)")
    return binary


def _run(*args: str) -> None:
    proc = subprocess.run([_openssl(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed:\n{proc.stderr}")


def openssl_commands(certs: StackCerts) -> list[list[str]]:
    """The ``openssl`` argument lists that make ``certs``, in order (pure, for tests)."""
    d, ca, server = certs.directory, certs.ca_file, certs.server_cert
    csr, ext = d / "server.csr", d / "server.ext"
    ca_key, key, keystore = str(certs.ca_key), str(certs.server_key), str(certs.keystore)
    days = str(VALID_DAYS)
    return [
        ["genrsa", "-out", ca_key, "2048"],
        ["req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", days,
         "-subj", "/CN=vitrine local stack CA", "-out", str(ca)],
        ["genrsa", "-out", key, "2048"],
        ["req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", ca_key, "-CAcreateserial",
         "-days", days, "-sha256", "-extfile", str(ext), "-out", str(server)],
        ["pkcs12", "-export", "-in", str(server), "-inkey", key, "-certfile", str(ca),
         "-name", "broker", "-out", keystore, "-passout", f"file:{certs.keystore_password_file}"],
    ]  # fmt: skip


def make_certs(directory: Path) -> StackCerts:
    """Make (once) a CA and a server certificate for 127.0.0.1/localhost under ``directory``."""
    certs = StackCerts(directory)
    if certs.complete():
        return certs
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    # The keystore password goes to openssl as a file, never on a command line.
    read_or_create_secret(certs.keystore_password_file)
    (directory / "server.ext").write_text(
        f"subjectAltName={SERVER_SAN}\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    old = os.umask(0o077)  # keys and the keystore readable by this user only
    try:
        for args in openssl_commands(certs):
            _run(*args)
    finally:
        os.umask(old)
    logger.info("made a CA and a server certificate (%s) under %s", SERVER_SAN, directory)
    return certs
