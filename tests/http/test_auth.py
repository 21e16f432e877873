"""API keys: the file holds ids and hashes, keys are checked in constant time, a changed file is
taken without a restart, and a file that breaks keeps the keys in force."""

import os
import time
from pathlib import Path

import pytest
import yaml

from chaos_pyfunc.http import auth
from chaos_pyfunc.http.auth import KeyRing, KeysFileError, create, revoke


def advance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the once-a-second look at the file, without waiting for it."""
    now = time.monotonic() + auth.RECHECK_SECONDS + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: now)


def test_the_file_holds_ids_and_hashes_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "keys.yml"
    key = create(path, "acme")
    assert auth.KEY_PATTERN.fullmatch(key)
    text = path.read_text()
    assert key not in text and key.split("_", 2)[2] not in text
    (entry,) = yaml.safe_load(text)["keys"]
    assert entry == {"client": "acme", "id": key.split("_")[1], "sha256": auth.digest(key)}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_key_is_identified_by_its_id_and_a_near_miss_is_not(tmp_path: Path) -> None:
    path = tmp_path / "keys.yml"
    key = create(path, "acme")
    ring = KeyRing(path)
    assert ring.identify(f"Bearer {key}") == key.split("_")[1]
    assert ring.identify(f"bearer   {key} ") == key.split("_")[1]
    near = key[:-1] + ("A" if key[-1] != "A" else "B")
    for header in (near, f"Bearer {near}", f"Token {key}", "", "Bearer"):
        assert ring.identify(header) is None, header


def test_rotation_two_keys_at_once_then_the_old_one_revoked_without_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.yml"
    old = create(path, "acme")
    ring = KeyRing(path)
    new = create(path, "acme")
    advance(monkeypatch)
    assert ring.identify(f"Bearer {old}") and ring.identify(f"Bearer {new}")
    assert revoke(path, "acme", old.split("_")[1]) == [old.split("_")[1]]
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a distinct mtime, as a Secret update
    advance(monkeypatch)
    assert ring.identify(f"Bearer {old}") is None
    assert ring.identify(f"Bearer {new}") == new.split("_")[1]


def test_a_broken_file_at_start_stops_the_server_and_later_keeps_the_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.yml"
    with pytest.raises(KeysFileError, match="cannot be read"):
        KeyRing(path)
    key = create(path, "acme")
    ring = KeyRing(path)
    path.write_text("keys: [oops")
    advance(monkeypatch)
    assert ring.identify(f"Bearer {key}") == key.split("_")[1]


@pytest.mark.parametrize("text", ["keys: 3", "keys:\n- client: a\n  id: xyz\n  sha256: 00"])
def test_a_malformed_file_is_refused_naming_the_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys.yml"
    path.write_text(text)
    with pytest.raises(KeysFileError, match=str(path)):
        KeyRing(path)


def test_revoke_names_an_unknown_client_and_create_a_bad_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.yml"
    create(path, "acme")
    with pytest.raises(KeysFileError, match="no key of client 'other'"):
        revoke(path, "other")
    with pytest.raises(KeysFileError, match="client name"):
        create(path, "a b")
    assert revoke(path, "acme") and yaml.safe_load(path.read_text())["keys"] == []
