"""Helpers for tests against Debian's real ``nats-server`` (not a conftest: imported).

* :class:`NatsServer`: ``nats-server`` on 127.0.0.1:<free port> with a config file
  the test writes (JetStream on, its own store directory), stopped in ``stop()``;
  ``stop()``/``start()`` again keep the port and the store (an outage).
* :func:`make_tls`: a CA, a server certificate for 127.0.0.1/localhost and a client
  certificate, made with ``cryptography`` (no trustme needed).
* :func:`make_operator`: operator, account and user nkeys and JWTs (the NATS JWT v2
  claims, signed with the ``nkeys`` package), a server config for them and a user
  ``.creds`` file, in place of the ``nsc`` tool that Debian does not package.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import nkeys  # type: ignore[import-untyped]  # nats-py's optional signer, no stubs
    HAVE_NKEYS = True
except ImportError:  # pragma: no cover - nats-py[nkeys] brings it
    HAVE_NKEYS = False

NATS_SERVER = shutil.which("nats-server") or next(
    (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)

needs_nats_server = pytest.mark.skipif(
    NATS_SERVER is None, reason="Debian's nats-server is not installed "
    "(scripts/install-deps installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process; ``extra`` is appended to its config file."""

    def __init__(self, directory: Path, extra: str = "", *, jetstream: bool = True) -> None:
        assert NATS_SERVER is not None
        self.port = free_port()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = directory / "nats-server.log"
        self.conf = directory / "nats-server.conf"
        js = f'jetstream {{ store_dir: "{directory / "js"}" }}\n' if jetstream else ""
        self.conf.write_text(f"listen: 127.0.0.1:{self.port}\n{js}{extra}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        assert NATS_SERVER is not None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf)],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --- TLS ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing here (a client that trusts only it must refuse)."""


def make_tls(directory: Path) -> TlsFiles:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str,
             usage: x509.ObjectIdentifier, stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)
        return cert_path, key_path

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = ca("ccsa test CA")
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _, other = ca("ccsa unrelated CA")
    (directory / "other-ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = leaf(ca_key, ca_cert, "127.0.0.1",
                                   ExtendedKeyUsageOID.SERVER_AUTH, "server")
    client_cert, client_key = leaf(ca_key, ca_cert, "cc-slurm-adapter",
                                   ExtendedKeyUsageOID.CLIENT_AUTH, "client")
    return TlsFiles(directory / "ca.pem", server_cert, server_key, client_cert, client_key,
                    directory / "other-ca.pem")


# --- nkeys, JWTs, creds ---------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


USER_PREFIX: int = nkeys.PREFIX_BYTE_USER if HAVE_NKEYS else 0


def new_nkey(prefix: int = USER_PREFIX) -> tuple[str, str]:
    """(seed, public key) of a fresh nkey with the role ``prefix``."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    kp = nkeys.from_seed(bytearray(seed))
    return seed.decode(), kp.public_key.decode()


def _jwt(signer_seed: str, subject: str, name: str, nats: dict[str, object]) -> str:
    kp = nkeys.from_seed(bytearray(signer_seed.encode()))
    claims = {"jti": uuid.uuid4().hex.upper(), "iat": int(time.time()),
              "iss": kp.public_key.decode(), "name": name, "sub": subject, "nats": nats}
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = kp.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(signature)}"


@dataclass(frozen=True)
class OperatorSetup:
    server_conf: str
    creds: Path
    other_creds: Path
    """Creds of a user signed by an account the server does not know."""


def make_operator(directory: Path) -> OperatorSetup:
    directory.mkdir(parents=True, exist_ok=True)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1}
    op_seed, op_pub = new_nkey(nkeys.PREFIX_BYTE_OPERATOR)
    op_jwt = _jwt(op_seed, op_pub, "ccsa-operator", {"type": "operator", "version": 2})
    acc_seed, acc_pub = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    acc_jwt = _jwt(op_seed, acc_pub, "ccsa-account",
                   {"type": "account", "version": 2, "limits": unlimited})
    (directory / "operator.jwt").write_text(op_jwt)

    def creds(account_seed: str, stem: str) -> Path:
        user_seed, user_pub = new_nkey(nkeys.PREFIX_BYTE_USER)
        user_jwt = _jwt(account_seed, user_pub, stem,
                        {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1,
                         "data": -1, "payload": -1})
        path = directory / f"{stem}.creds"
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n" f"{user_jwt}\n" "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n\n"
            "-----BEGIN USER NKEY SEED-----\n" f"{user_seed}\n"
            "------END USER NKEY SEED------\n")
        path.chmod(0o600)
        return path

    other_seed, _ = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    conf = (f'operator: "{directory / "operator.jwt"}"\n'
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n  {acc_pub}: \"{acc_jwt}\"\n}}\n")
    return OperatorSetup(conf, creds(acc_seed, "adapter"), creds(other_seed, "stranger"))
