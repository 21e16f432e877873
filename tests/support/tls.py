"""Self-signed certificates for 127.0.0.1: TLS as the pods run it, where no CA is at hand, and a
Secret volume renewed as the kubelet does it."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def pair(common_name: str = "127.0.0.1") -> tuple[bytes, bytes]:
    """A new certificate for 127.0.0.1 (a random serial) and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    cert, key = pair()
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return cert_file, key_file


def publish(mount: Path, cert: bytes, key: bytes) -> tuple[Path, Path]:
    """``cert`` and ``key`` as the kubelet mounts a Secret's new version: tls.crt and tls.key are
    symlinks through ``..data`` to a directory of the version, and ``..data`` is swapped to the
    new one in one rename; the version before is then removed."""
    mount.mkdir(parents=True, exist_ok=True)
    before = (mount / "..data").resolve() if (mount / "..data").is_symlink() else None
    version = mount / f"..{time.time_ns()}"
    version.mkdir()
    (version / "tls.crt").write_bytes(cert)
    (version / "tls.key").write_bytes(key)
    swap = mount / "..data_tmp"
    swap.symlink_to(version.name)
    swap.replace(mount / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(f"..data/{name}")
    if before is not None:
        shutil.rmtree(before)
    return mount / "tls.crt", mount / "tls.key"


def serial(pem: bytes | str) -> int:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem).serial_number
