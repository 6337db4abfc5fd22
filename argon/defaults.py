"""The process-wide default ``Client`` used by ``argon.connect`` and the other functions."""

from __future__ import annotations

import atexit
import threading

from .client import Client

_lock = threading.Lock()
_client: Client | None = None
_owned = False  # whether the SDK made ``_client`` (and so must close it)


def default_client() -> Client:
    """The default client: the one given to ``set_default_client``, else one made on
    first use from ``$ARGON_MONGODB_URI`` (or the local default port), closed at exit."""
    global _client, _owned
    with _lock:
        if _client is None:
            _client, _owned = Client(), True
            atexit.register(_client.close)
        return _client


def set_default_client(client: Client | None) -> None:
    """Use ``client`` for the module-level functions (``None``: make one on next use).

    A default the SDK made itself is closed; one you gave is yours to close.
    """
    global _client, _owned
    with _lock:
        previous, owned = _client, _owned
        _client, _owned = client, False
    if previous is not None and owned and previous is not client:
        atexit.unregister(previous.close)
        previous.close()
