"""API keys for the external programmers: ``Authorization: Bearer <key>``, one key per client
(or several at once, while one is rotated).

A key reads ``chaos_<id>_<secret>``: the id (8 hex digits) names it in logs and metrics; the
secret is 32 random bytes. The server holds only a file of ids and SHA-256 hashes
(``CHAOS_API_KEYS_FILE``, mounted from a Secret), never a key. An unsalted SHA-256 is enough for a
256-bit random secret (there is no dictionary to try), and the comparison is constant-time
(hmac.compare_digest). The file is looked at again at most once a second: a Secret update reaches
the mounted file, and the running server takes it without a restart; a file that no longer reads
keeps the keys it had, and says so in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"chaos_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
RECHECK_SECONDS = 1.0


class KeysFileError(ValueError):
    """The keys file is missing or not a list of keys."""


@dataclass(frozen=True)
class Entry:
    client: str
    id: str
    sha256: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_entries(path: Path) -> list[Entry]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KeysFileError(f"the API keys file {path} cannot be read: {type(exc).__name__}") from None
    rows = document.get("keys", []) if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise KeysFileError(f"the API keys file {path} holds no list under 'keys'")
    entries = []
    for number, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("client"), str)
                and re.fullmatch(r"[0-9a-f]{8}", str(row.get("id", "")))
                and re.fullmatch(r"[0-9a-f]{64}", str(row.get("sha256", "")))):
            raise KeysFileError(f"the API keys file {path}: entry {number} needs client, id and sha256")
        entries.append(Entry(row["client"], row["id"], row["sha256"]))
    return entries


def _write(path: Path, entries: list[Entry]) -> None:
    """Replace the file in one rename, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"keys": [{"client": e.client, "id": e.id, "sha256": e.sha256} for e in entries]}
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(f"# API keys of chaos (ids and SHA-256 hashes only), {datetime.now(UTC):%Y-%m-%d}\n")
        yaml.safe_dump(document, out, sort_keys=False)
    os.chmod(scratch, 0o600)
    os.replace(scratch, path)


def create(path: Path, client: str) -> str:
    """A new key for ``client``, added to the file (created if need be); the key is returned
    once and stored nowhere."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", client):
        raise KeysFileError("a client name is 1 to 63 letters, digits, '.', '_' or '-'")
    entries = read_entries(path) if path.exists() else []
    key_id = secrets.token_hex(4)
    while any(e.id == key_id for e in entries):
        key_id = secrets.token_hex(4)
    key = f"chaos_{key_id}_{secrets.token_urlsafe(32)}"
    _write(path, [*entries, Entry(client, key_id, digest(key))])
    return key


def revoke(path: Path, client: str, key_id: str | None = None) -> list[str]:
    """Remove ``client``'s keys (only ``key_id`` if given); the ids removed."""
    entries = read_entries(path)
    gone = [e for e in entries if e.client == client and key_id in (None, e.id)]
    if not gone:
        raise KeysFileError(f"no key of client {client!r}" + (f" with id {key_id}" if key_id else ""))
    _write(path, [e for e in entries if e not in gone])
    return [e.id for e in gone]


class KeyRing:
    """The keys a running server accepts, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._by_id = self._index(read_entries(path))  # at start, an unreadable file stops the server
        self._checked = time.monotonic()

    def __len__(self) -> int:
        return len(self._by_id)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)  # follows the symlinks a Secret volume swaps on update
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    @staticmethod
    def _index(entries: list[Entry]) -> dict[str, Entry]:
        return {e.id: e for e in entries}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._by_id = self._index(read_entries(self.path))
            except KeysFileError as exc:
                log.error("%s; the %d keys read before stay in force", exc, len(self._by_id))
                return
            log.info("API keys re-read: %d keys", len(self._by_id))

    def identify(self, authorization: str) -> str | None:
        """The key id of a valid ``Authorization`` header value, else None."""
        self._refresh()
        scheme, _, key = authorization.strip().partition(" ")
        match = KEY_PATTERN.fullmatch(key.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            return None
        entry = self._by_id.get(match.group(1))
        expected = entry.sha256 if entry else "0" * 64  # the same work for an unknown id
        ok = hmac.compare_digest(digest(key.strip()), expected)
        return entry.id if ok and entry else None
