"""TLS contexts for ``/wss`` from a node's settings (``tls_cert``, ``tls_key``, ``tls_ca``).

Theory of operation
-------------------
:class:`~protocols.NodeConfig` holds only paths (``protocols/`` reads no
files); this module loads them when a node starts, before any actor runs, so
a missing, unreadable or malformed file is one :class:`~protocols.ConfigError`
that names the setting and the file - never a traceback from deep inside a
listener. Each file is parsed with ``cryptography`` first because OpenSSL's
own messages (``[SSL] PEM lib``) do not say which file is wrong.

* server (listening on ``/wss``): ``ssl.create_default_context(CLIENT_AUTH)``
  with the certificate chain and key. Clients are not asked for certificates:
  peers authenticate each other in the libp2p handshake on top.
* client (dialing ``/wss``): ``ssl.create_default_context()`` - the system's
  trusted CAs, ``check_hostname`` and ``CERT_REQUIRED`` - plus the certificates
  of ``tls_ca`` when set. ``tls_ca`` *adds* to the system CAs rather than
  replacing them: a node dials peers learnt from bootstrap documents, some with
  publicly issued certificates, others in a lab signed by a private CA, and
  the peer's identity is checked by the handshake anyway. The same context
  verifies ``https://`` bootstrap URLs, so one private CA serves a private
  network's boot nodes and its ``/wss`` peers.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from protocols import ConfigError, NodeConfig

__all__ = ["check_tls_files", "client_context", "server_context"]


def check_tls_files(config: NodeConfig) -> None:
    """Load the config's TLS files once, only to report a bad one early (the CLI does,
    before it logs anything); ConfigError names the setting and the file."""
    if config.tls_cert is not None and config.tls_key is not None:
        server_context(config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        client_context(config.tls_ca)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The context that serves ``/wss``; ConfigError naming the file when one is unusable."""
    _load_certificates("tls_cert", cert)
    _load_private_key(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_refuse_password(key))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"tls_key {key}: not the private key of tls_cert {cert}"
                              ) from None
        raise ConfigError(f"tls_key {key}: cannot load certificate/key with tls_cert {cert}: "
                          f"{_reason(exc)}") from None
    return context


@functools.lru_cache(maxsize=8)
def client_context(ca: Path | None) -> ssl.SSLContext:
    """The context for ``/wss`` dials and ``https`` bootstrap fetches: system CAs plus
    ``ca``; verification always on.

    One context per CA file per process: loading the system's trusted CAs
    takes tens of milliseconds, and one process may run many nodes (tests,
    simulations). A context is never changed after it is made, so sharing it
    is safe; a changed CA file is read again by a new process.
    """
    context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if ca is not None:
        _load_certificates("tls_ca", ca)
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"tls_ca {ca}: cannot load CA certificates: "
                              f"{_reason(exc)}") from None
    return context


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot read: {_reason(exc)}") from None


def _load_certificates(setting: str, path: Path) -> None:
    data = _read(setting, path)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{setting} {path}: not a PEM certificate file (-----BEGIN "
                          f"CERTIFICATE-----): {_reason(exc)}") from None


def _load_private_key(path: Path) -> None:
    data = _read("tls_key", path)
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise ConfigError(f"tls_key {path}: the private key is encrypted; "
                          "give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"tls_key {path}: not a usable PEM private key: "
                          f"{_reason(exc)}") from None


def _refuse_password(path: Path) -> Callable[[], bytes]:
    """A password callback that refuses, so OpenSSL never prompts on the terminal."""
    def refuse() -> NoReturn:
        raise ConfigError(f"tls_key {path}: the private key is encrypted; "
                          "give an unencrypted PEM key")
    return refuse


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    text = str(exc).split(". See https://", 1)[0]  # cryptography's pointer to its FAQ
    return text or type(exc).__name__
