"""A renewed TLS certificate, served without a restart.

cert-manager renews the certificate's Secret well before it expires, and the kubelet updates the
mounted files: atomically, the names being symlinks through ``..data`` to a directory of the
Secret's version, swapped in one rename. uvicorn reads the files once, into the ``ssl.SSLContext``
every handshake uses; ``CertificateWatch`` looks at the files every ``tls_reload_seconds`` and
loads a changed pair into that same context: new connections get the new certificate, those
already open keep theirs. A pair that does not load (half written, a key of another
certificate) is logged and the one in use kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)

# What tells a version of a file from another, through the symlinks: inode, mtime, size.
Stamp = tuple[tuple[int, int, int], ...]


def stamp(*paths: str) -> Stamp:
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in map(os.stat, paths))


def load_pair(context: ssl.SSLContext, cert_file: str, key_file: str) -> x509.Certificate:
    """Load the pair into ``context``, or raise and leave it as it was; the certificate loaded.

    load_cert_chain sets the certificate, then the key: failing on the key, it would leave the
    context with the new certificate and no key, and every handshake failing. So the pair is read
    once, tried on a context of its own, and only those same bytes are loaded into ``context``.
    """
    cert, key = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    certificate = x509.load_pem_x509_certificate(cert)  # ValueError if it is not one
    with tempfile.TemporaryDirectory(prefix="chaos-tls-") as scratch:  # mode 0700
        cert_copy, key_copy = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
        cert_copy.write_bytes(cert)
        key_copy.write_bytes(key)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_copy, key_copy)
        context.load_cert_chain(cert_copy, key_copy)
    return certificate


class CertificateWatch:
    """The TLS files of a serving context, loaded into it again whenever they change."""

    def __init__(self, context: ssl.SSLContext, cert_file: str, key_file: str, interval: float) -> None:
        self.context = context
        self.files = (cert_file, key_file)
        self.interval = interval
        self._seen = stamp(*self.files)  # the pair uvicorn has just loaded

    def check(self) -> bool:
        """Load the pair if its files changed since last seen; True once a new pair is in use."""
        try:
            now = stamp(*self.files)
        except OSError as exc:
            log.error("cannot read the TLS files (%s); the certificate in use is kept", exc.strerror)
            return False
        if now == self._seen:
            return False
        self._seen = now  # a pair that does not load is tried again once its files change again
        try:
            certificate = load_pair(self.context, *self.files)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.error("the changed TLS certificate and key do not load together (%s); the certificate "
                      "in use is kept", type(exc).__name__)
            return False
        log.info("TLS certificate reloaded: serial %x, valid until %s, for new connections",
                 certificate.serial_number, certificate.not_valid_after_utc.isoformat())
        return True

    async def watch(self) -> None:
        """Check every ``interval`` seconds, on the event loop's own thread: asyncio makes every
        connection's TLS object from the context there, and OpenSSL's context must not change
        under another thread making one (load_cert_chain releases the interpreter meanwhile)."""
        while True:
            await asyncio.sleep(self.interval)
            self.check()
