"""Azurite (the Azure Storage emulator, npm `azurite`) on loopback over HTTPS, as production-style
`https://<account>.blob.core.localhost:<port>` hosts, for the blob side of the Azure ML contract tests
(azure-storage-blob finds the account name of a key credential in the host only in `<account>.blob.core.*`).

HTTPS because azure-ai-ml always builds `https://<account>.blob.<storage suffix>` URLs and because
bearer tokens are only sent over TLS; the test certificate is made here (`cryptography`) and the clients
are told to trust it through REQUESTS_CA_BUNDLE. `<account>.blob.core.localhost` names do not resolve on
every machine, so `resolve_localhost_names()` makes them resolve to 127.0.0.1 in this process (a hosts-file
entry, in effect). `--oauth basic` makes Azurite accept bearer tokens (issuer, audience and expiry are
checked, the signature is not), so identity-based access is exercised as well as account keys.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AZURITE_BLOB = HERE / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"


def azurite_available() -> str | None:
    """None when Azurite can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not AZURITE_BLOB.is_file():
        return "Azurite is not installed: run `npm ci --prefix tests/azure`"
    return None


def make_certificate(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (plus localhost and 127.0.0.1): (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amlops test storage")])
    alternative = [x509.DNSName(name) for name in ["localhost", *names]] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """One Azurite blob service with the given accounts (name -> base64 key), in memory."""

    def __init__(self, folder: Path, accounts: dict[str, str]):
        self.folder = folder
        self.accounts = accounts
        self.port = free_port()
        self.cert, self.key = make_certificate(folder, [f"{name}.blob.core.localhost" for name in accounts])
        self.process: subprocess.Popen | None = None

    @property
    def suffix(self) -> str:
        """What follows `<account>.blob.` in a blob endpoint: azure-ai-ml's `storage_endpoint`."""
        return f"core.localhost:{self.port}"

    def url(self, account: str) -> str:
        return f"https://{account}.blob.{self.suffix}"

    def start(self, timeout_s: float = 30) -> "Azurite":
        command = ["node", str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                   "--cert", str(self.cert), "--key", str(self.key), "--oauth", "basic", "--inMemoryPersistence",
                   "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"]
        if os.environ.get("AMLOPS_AZURITE_DEBUG"):
            command += ["--debug", str(self.folder / "debug.log")]
        env = {**os.environ, "AZURITE_ACCOUNTS": ";".join(f"{name}:{key}" for name, key in self.accounts.items())}
        log = (self.folder / "azurite.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
                                        start_new_session=True)
        self._wait(timeout_s)
        return self

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        context = ssl.create_default_context(cafile=str(self.cert))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited: {(self.folder / 'azurite.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def resolve_localhost_names(monkeypatch) -> None:
    """`*.localhost` resolves to 127.0.0.1 in this process (RFC 6761), like a hosts-file entry would."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return original(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
