"""Certificates laid out as certbot lays them out, for the test.

    certbot_like.py ROOT issue NAME VERSION   # a test CA (made once) signs a new
                                              # pair: ROOT/archive/NAME/{cert,chain,
                                              # fullchain,privkey}VERSION.pem
    certbot_like.py ROOT deploy NAME VERSION  # point ROOT/live/NAME/*.pem at them
                                              # the way `certbot renew` does
    certbot_like.py ROOT serial PEM           # the serial number of a certificate

`deploy` follows certbot's storage.py: for each of cert, privkey, chain,
fullchain in that order, unlink the live symlink and make a new relative one
(`../../archive/NAME/kindN.pem`). Between two steps the live folder holds a
new key beside an old certificate: a reader must not take that half-renewed
pair (wssd refuses a key that does not match and keeps serving the old pair).
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALL_FOUR = ("cert", "privkey", "chain", "fullchain")


def pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca(root: Path):
    """The test CA (ROOT/ca.pem, ROOT/ca-key.pem), made on first use."""
    cert_file, key_file = root / "ca.pem", root / "ca-key.pem"
    if not cert_file.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinychat test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256()))
        key_file.write_bytes(pem_key(key))
        key_file.chmod(0o600)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    return x509.load_pem_x509_certificate(cert_file.read_bytes()), key


def issue(root: Path, name: str, version: int):
    ca_cert, ca_key = ca(root)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    archive = root / "archive" / name
    archive.mkdir(parents=True, exist_ok=True)
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    chain = ca_cert.public_bytes(serialization.Encoding.PEM)
    privkey = archive / f"privkey{version}.pem"
    privkey.write_bytes(pem_key(key))
    privkey.chmod(0o600)
    (archive / f"cert{version}.pem").write_bytes(leaf)
    (archive / f"chain{version}.pem").write_bytes(chain)
    (archive / f"fullchain{version}.pem").write_bytes(leaf + chain)
    print(format(cert.serial_number, "x"))


def deploy(root: Path, name: str, version: int):
    live = root / "live" / name
    live.mkdir(parents=True, exist_ok=True)
    for kind in ALL_FOUR:
        link = live / f"{kind}.pem"
        if link.is_symlink():
            os.unlink(link)
        os.symlink(f"../../archive/{name}/{kind}{version}.pem", link)


def main() -> int:
    root, command, *rest = sys.argv[1:]
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    if command == "issue":
        issue(root_path, rest[0], int(rest[1]))
    elif command == "deploy":
        deploy(root_path, rest[0], int(rest[1]))
    elif command == "serial":
        cert = x509.load_pem_x509_certificate(Path(rest[0]).read_bytes())
        print(format(cert.serial_number, "x"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
