"""Listening and dialing ``/wss``: TLS settings, certificate verification, one-line errors.

A small private PKI is made per module with ``cryptography``: a CA and a leaf
certificate for the loopback IPs used here (IP SANs), signed by the CA, so
``tls_ca`` is exercised for real. Whole nodes run over real sockets on
loopback (a distinct ``127.0.81.x`` per test, port 0) on the real clock; every
wait is bounded by ``trio.fail_after``. The CLI tests run ``autonat`` as a
subprocess with the helpers of ``test_cli_node``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_cli_node import _daemon, _one_line_error, _run

from actors import ConnectError, open_node
from actors.transport._tls import client_context
from protocols import (
    AddressPolicy,
    ConfigError,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    build_node_config,
    env_settings,
    load_config_text,
)

LOOPBACK = AddressPolicy(allow_loopback=True)
SAN_IPS = ("127.0.0.1", "127.0.81.1", "127.0.81.3", "127.0.81.5")
"""IPs in the leaf certificate; 127.0.81.7 is deliberately missing."""
LIMIT = 30.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path
    encrypted_key: Path
    garbage: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a leaf for :data:`SAN_IPS` signed by it, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name("trio-autonat test node"))
        .issuer_name(ca_cert.subject).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SAN_IPS]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    files = Pki(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem",
                other_key=folder / "other-key.pem", encrypted_key=folder / "encrypted-key.pem",
                garbage=folder / "garbage.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_pem_key(leaf_key))
    files.other_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    files.encrypted_key.write_bytes(_pem_key(leaf_key, b"secret"))
    files.garbage.write_text("this is not PEM\n")
    return files


def _server(pki: Pki, host: str) -> NodeConfig:
    return NodeConfig(listen=(f"/ip4/{host}/tcp/0/wss",), policy=LOOPBACK,
                      tls_cert=pki.cert, tls_key=pki.key)


def _client(host: str, ca: Path | None) -> NodeConfig:
    return NodeConfig(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK, tls_ca=ca)


def _identified(peer: PeerId) -> Callable[[NodeSnapshot], bool]:
    def check(snap: NodeSnapshot) -> bool:
        record = snap.peer(peer)
        return peer in snap.connected_peers and record is not None \
            and record.agent_version != ""
    return check


# --- whole nodes over /wss ----------------------------------------------------------------


async def test_wss_nodes_connect_and_identify_when_the_ca_is_trusted(pki: Pki) -> None:
    with trio.fail_after(LIMIT):
        async with open_node(_server(pki, "127.0.81.1")) as server, \
                open_node(_client("127.0.81.2", pki.ca)) as client:
            [addr] = server.listen_addrs
            assert addr.secure and re.fullmatch(
                rf"/ip4/127\.0\.81\.1/tcp/\d+/wss/p2p/{server.peer_id}", str(addr)), addr
            info = await client.connect(addr)
            assert info.peer_id == server.peer_id
            assert info.remote_addr.secure and info.remote_addr.port == addr.port
            await client.wait_for(_identified(server.peer_id))
            await server.wait_for(_identified(client.peer_id))
            # the server learnt the client's (plain /ws) listen address through Identify
            record = server.snapshot().peer(client.peer_id)
            assert record is not None and record.addrs == client.listen_addrs


async def _refused(pki: Pki, server_host: str, client_host: str, ca: Path | None) -> str:
    with trio.fail_after(LIMIT):
        async with open_node(_server(pki, server_host)) as server, \
                open_node(_client(client_host, ca)) as client:
            with pytest.raises(ConnectError) as failure:
                await client.connect(server.listen_addrs[0])
            assert client.snapshot().connections == ()
            assert server.snapshot().connections == ()
    return str(failure.value)


async def test_wss_dial_without_trusting_the_ca_fails_certificate_verification(
        pki: Pki) -> None:
    message = await _refused(pki, "127.0.81.3", "127.0.81.4", ca=None)
    assert "certificate verify failed" in message, message


async def test_wss_dial_checks_the_ip_against_the_certificate(pki: Pki) -> None:
    """Trusting the CA is not enough: 127.0.81.7 is not among the certificate's IP SANs."""
    message = await _refused(pki, "127.0.81.7", "127.0.81.8", ca=pki.ca)
    assert "certificate verify failed" in message and "mismatch" in message, message


def test_tls_ca_adds_to_the_system_cas_and_verification_is_on(pki: Pki) -> None:
    context = client_context(pki.ca)
    system = ssl.create_default_context()
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == len(system.get_ca_certs()) + 1
    assert any("'test CA'" in str(cert.get("subject")) for cert in context.get_ca_certs())


@pytest.mark.parametrize(("fields", "setting", "file", "reason"), [
    ({"tls_cert": "missing"}, "tls_cert", "missing", "cannot read"),
    ({"tls_cert": "garbage"}, "tls_cert", "garbage", "not a PEM certificate"),
    ({"tls_cert": "key"}, "tls_cert", "key", "not a PEM certificate"),
    ({"tls_key": "missing"}, "tls_key", "missing", "cannot read"),
    ({"tls_key": "garbage"}, "tls_key", "garbage", "not a usable PEM private key"),
    ({"tls_key": "encrypted_key"}, "tls_key", "encrypted_key", "encrypted"),
    ({"tls_key": "other_key"}, "tls_key", "other_key", "not the private key of tls_cert"),
    ({"tls_ca": "missing"}, "tls_ca", "missing", "cannot read"),
    ({"tls_ca": "garbage"}, "tls_ca", "garbage", "not a PEM certificate"),
])
async def test_unusable_tls_files_are_a_config_error_naming_the_file(
        pki: Pki, tmp_path: Path, fields: dict[str, str], setting: str, file: str,
        reason: str) -> None:
    paths = {"missing": tmp_path / "missing.pem", "garbage": pki.garbage, "key": pki.key,
             "encrypted_key": pki.encrypted_key, "other_key": pki.other_key}
    settings: dict[str, Path] = {"tls_cert": pki.cert, "tls_key": pki.key}
    settings.update({name: paths[value] for name, value in fields.items()})
    config = NodeConfig(listen=("/ip4/127.0.81.9/tcp/0/wss",), policy=LOOPBACK,
                        **settings)  # type: ignore[arg-type]
    with trio.fail_after(LIMIT):
        # a plain ConfigError (not a group, no supervisor escalation): raised before start
        with pytest.raises(ConfigError) as failure:
            async with open_node(config):
                pytest.fail("the node started")  # pragma: no cover
    message = str(failure.value)
    assert message.startswith(f"{setting} {paths[file]}: "), message
    assert reason in message and "\n" not in message, message


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({}, r"^listen address /ip4/127\.0\.81\.9/tcp/0/wss needs tls_cert and tls_key "
         r"\(--tls-cert FILE --tls-key FILE\)$"),
    ({"tls_cert": Path("c.pem")}, r"^tls_cert is set but tls_key is not"),
    ({"tls_key": Path("k.pem")}, r"^tls_key is set but tls_cert is not"),
])
def test_wss_listen_needs_a_certificate_and_key(fields: dict[str, Path], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig(listen=("/ip4/127.0.81.9/tcp/0/ws", "/ip4/127.0.81.9/tcp/0/wss"),
                   **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tls_"):
        build_node_config({"listen": ("/ip4/127.0.81.9/tcp/0/wss",), **fields})


def test_tls_settings_come_from_files_and_environment() -> None:
    assert NodeConfig(listen=("/ip4/127.0.81.9/tcp/0/wss",), tls_cert=Path("c.pem"),
                      tls_key=Path("k.pem")).tls_ca is None
    assert NodeConfig(tls_cert=Path("c.pem"), tls_key=Path("k.pem")).listen  # /ws only: fine
    from_file = load_config_text(
        '[node]\nlisten = ["/ip4/127.0.81.9/tcp/0/wss"]\ntls_cert = "/etc/c.pem"\n'
        'tls_key = "/etc/k.pem"\n', source="t.toml")
    from_env = env_settings({"AUTONAT_TLS_CA": "/etc/ca.pem"})
    config = build_node_config(from_file, from_env)
    assert (config.tls_cert, config.tls_key, config.tls_ca) == (
        Path("/etc/c.pem"), Path("/etc/k.pem"), Path("/etc/ca.pem"))
    with pytest.raises(ConfigError, match=r"t\.toml: tls_ca: expected a path"):
        load_config_text("tls_ca = 3\n", source="t.toml")
    # "" unsets, as for every optional setting
    assert build_node_config(from_env, {"tls_ca": ""}).tls_ca is None


# --- the command line ---------------------------------------------------------------------


async def test_cli_wss_listen_without_a_certificate_is_one_line(tmp_path: Path) -> None:
    out = await _run(tmp_path, "node", "--listen", "/ip4/127.0.0.1/tcp/0/wss", "--http", "")
    _one_line_error(out, 1, "/ip4/127.0.0.1/tcp/0/wss", "tls_cert", "--tls-cert")


async def test_cli_node_serves_wss_with_tls_flags(pki: Pki, tmp_path: Path) -> None:
    with trio.fail_after(2 * LIMIT):
        async with _daemon(tmp_path, "node", "--listen", "/ip4/127.0.0.1/tcp/0/wss",
                           "--http", "", "--tls-cert", str(pki.cert),
                           "--tls-key", str(pki.key)) as daemon:
            [listening] = daemon.listening
            assert re.fullmatch(rf"/ip4/127\.0\.0\.1/tcp/[1-9]\d*/wss/p2p/{daemon.peer_id}",
                                listening), listening
            async with open_node(_client("127.0.81.6", pki.ca)) as client:
                info = await client.connect(listening)
                assert str(info.peer_id) == daemon.peer_id
                await client.wait_for(_identified(info.peer_id))
            assert await daemon.stop(signal.SIGTERM) == 0
            assert "Traceback" not in daemon.stderr()


@pytest.mark.parametrize(("command", "flags", "needles"), [
    ("node", ("--tls-cert", "{garbage}", "--tls-key", "{key}"), ("tls_cert", "{garbage}")),
    ("node", ("--tls-cert", "{cert}", "--tls-key", "{missing}"), ("tls_key", "{missing}")),
    ("probe", ("--tls-ca", "{garbage}", "--peer", "/ip4/127.0.81.10/tcp/9/wss/p2p/{peer}"),
     ("tls_ca", "{garbage}")),
])
async def test_cli_bad_tls_file_is_one_line_naming_it(
        pki: Pki, tmp_path: Path, command: str, flags: tuple[str, ...],
        needles: tuple[str, ...]) -> None:
    names = {"garbage": str(pki.garbage), "key": str(pki.key), "cert": str(pki.cert),
             "missing": str(tmp_path / "missing.pem"),
             "peer": str(Keypair.generate().peer_id)}
    listen = ("--listen", "/ip4/127.0.0.1/tcp/0/wss", "--http", "") if command == "node" \
        else ("--listen", "/ip4/127.0.81.10/tcp/0/ws")
    out = await _run(tmp_path, command, *listen, *(flag.format(**names) for flag in flags))
    line = _one_line_error(out, 1, *(needle.format(**names) for needle in needles))
    assert line.startswith("autonat: error: "), line


async def test_cli_help_lists_the_tls_flags(tmp_path: Path) -> None:
    node, probe = await _run(tmp_path, "node", "--help"), await _run(tmp_path, "probe", "--help")
    assert node.returncode == 0 and probe.returncode == 0
    for flag in ("--tls-cert", "--tls-key", "--tls-ca"):
        assert flag in node.stdout, flag
    assert "--tls-ca" in probe.stdout and "--tls-cert" not in probe.stdout


# --- https:// bootstrap URLs ----------------------------------------------------------------


async def _serve_status_over_https(pki: Pki, host: str, body: bytes,
                                   task_status: trio.TaskStatus[int]) -> None:
    """A minimal HTTPS server on ``host`` answering every request with ``body`` (JSON)."""
    from actors.transport._tls import server_context

    async def answer(stream: trio.SSLStream[trio.SocketStream]) -> None:
        with trio.move_on_after(LIMIT), contextlib.suppress(trio.BrokenResourceError):
            # a client that does not trust the certificate aborts the TLS handshake
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                  b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                                  + body)
            await stream.aclose()

    listeners = await trio.open_ssl_over_tcp_listeners(
        0, server_context(pki.cert, pki.key), host=host)
    task_status.started(listeners[0].transport_listener.socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)  # type: ignore[arg-type]


@pytest.mark.parametrize("trusted", [True, False], ids=["ca-trusted", "ca-not-trusted"])
async def test_https_boot_urls_are_verified_with_tls_ca(pki: Pki, trusted: bool) -> None:
    with trio.fail_after(LIMIT):
        async with open_node(NodeConfig(listen=("/ip4/127.0.81.3/tcp/0/ws",),
                                        policy=LOOPBACK)) as boot, trio.open_nursery() as n:
            body = json.dumps({"peers_count": 0, "peer_id": str(boot.peer_id),
                               "peer_addrs": [str(boot.listen_addrs[0])]}).encode()
            port = await n.start(_serve_status_over_https, pki, "127.0.81.1", body)
            config = NodeConfig.from_settings(
                listen=("/ip4/127.0.81.5/tcp/0/ws",), policy=LOOPBACK,
                boot_urls=(f"https://127.0.81.1:{port}/status",),
                tls_ca=pki.ca if trusted else None)
            async with open_node(config) as newcomer:
                if trusted:
                    await newcomer.wait_for(_identified(boot.peer_id))
                else:
                    while not (urls := newcomer.statistics().bootstrap.urls)[0].fetches:
                        await newcomer.activity.wait_past(newcomer.activity.count)
                    error = urls[0].last_error or ""
                    assert "tls: certificate verify failed" in error, error
                    assert "operation not permitted" not in error  # not read as an errno
                    assert not newcomer.snapshot().connected_peers
            n.cancel_scope.cancel()
