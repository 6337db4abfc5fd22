"""TLS for Argon's own listener: what clients connect to.

Theory of operation: with ``tls_cert_file`` (and ``tls_key_file`` when the key
is not in the certificate's file) set, every client connection is TLS, as a
mongod started with ``--tlsMode requireTLS``: the handshake runs in the
client's own task, bounded by ``frame_timeout``, and a client that does not
complete it is disconnected without a reply. ``tls_ca_file`` names the CAs
client certificates must come from; ``tls_require_client_cert`` refuses
clients without one. The context is built and checked at start-up
(``server_context``), so a missing or unreadable file fails before Argon
listens.
"""

from __future__ import annotations

import ssl

from .config import ConfigError, Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None when TLS is off; ``ConfigError`` if the
    files cannot be used."""
    if not settings.tls_cert_file:
        if settings.tls_key_file or settings.tls_ca_file or settings.tls_require_client_cert:
            raise ConfigError(
                "tls_key_file, tls_ca_file and tls_require_client_cert need tls_cert_file"
            )
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
        if settings.tls_ca_file:
            context.load_verify_locations(settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS for the listener: {exc}") from None
    if settings.tls_require_client_cert:
        if not settings.tls_ca_file:
            raise ConfigError("tls_require_client_cert needs tls_ca_file (the clients' CAs)")
        context.verify_mode = ssl.CERT_REQUIRED
    elif settings.tls_ca_file:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
