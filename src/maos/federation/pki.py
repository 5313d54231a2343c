"""A test PKI for a federation: one CA, one certificate per node.

Every link of the federation is mTLS (issue 11 item 4), so a deployment needs a CA and a
certificate per node before anything starts. `issue_pki` makes a real one with
`cryptography` for tests and trials; a production deployment plugs in its own CA
(docs/federation.md). A node's certificate serves both ends of a link (server and client
auth), names the node in its DNS SAN and common name, and carries the node's role in the
subject's OU and in a ``maos://node/<role>/<name>`` URI SAN, so a verifier reads who is
talking from the certificate the CA signed, not from what the peer says about itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from maos.federation.errors import FederationError

__all__ = [
    "ROLES",
    "NodeIdentity",
    "NodeSpec",
    "NodeTls",
    "PkiFiles",
    "cert_pin",
    "issue_pki",
    "rotate_cert",
    "verify_node_cert",
]

ROLES = ("sovereign", "sentinel", "pawn")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_URI_PREFIX = "maos://node/"
VALIDITY = dt.timedelta(days=365)
"""A test PKI's lifetime; rotation (issue 11 item 4) replaces certificates before it ends."""


@dataclass(frozen=True)
class NodeSpec:
    """A node the PKI issues a certificate for."""

    name: str
    role: str


@dataclass(frozen=True)
class NodeIdentity:
    """Who a verified certificate says its holder is."""

    name: str
    role: str


@dataclass(frozen=True)
class NodeTls:
    """A node's certificate, key and the federation's CA bundle (`maos node certs`)."""

    cert: Path
    key: Path
    ca: Path

    def block(self, *, verify: bool) -> dict[str, Any]:
        """The server's ``tls {}`` block for a listener (verify) or a leaf remote."""
        out: dict[str, Any] = {
            "cert_file": str(self.cert),
            "key_file": str(self.key),
            "ca_file": str(self.ca),
            "timeout": 5,
        }
        if verify:
            out["verify"] = True
        return out

    def client_context(self) -> ssl.SSLContext:
        """A client context that presents this node's certificate and trusts only the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass(frozen=True)
class PkiFiles:
    """Where `issue_pki` wrote the CA and each node's certificate and key."""

    ca_cert: Path
    ca_key: Path
    nodes: tuple[tuple[NodeSpec, Path, Path], ...]

    def cert(self, name: str) -> Path:
        return self._node(name)[1]

    def key(self, name: str) -> Path:
        return self._node(name)[2]

    def tls(self, name: str) -> NodeTls:
        """What node ``name`` presents and trusts on its links."""
        return NodeTls(cert=self.cert(name), key=self.key(name), ca=self.ca_cert)

    def _node(self, name: str) -> tuple[NodeSpec, Path, Path]:
        for entry in self.nodes:
            if entry[0].name == name:
                return entry
        raise KeyError(name)

    @classmethod
    def at(cls, out: Path, nodes: Sequence[NodeSpec]) -> PkiFiles:
        """The layout `issue_pki` writes under ``out``: ca.crt, ca.key, <node>.crt, <node>.key."""
        return cls(
            ca_cert=out / "ca.crt",
            ca_key=out / "ca.key",
            nodes=tuple((n, out / f"{n.name}.crt", out / f"{n.name}.key") for n in nodes),
        )


def _check(nodes: Sequence[NodeSpec]) -> None:
    if not any(n.role == "sovereign" for n in nodes):
        raise FederationError(
            "FED.NO_SOVEREIGN", "A federation needs one Sovereign; pass --sovereign NAME."
        )
    if sum(n.role == "sovereign" for n in nodes) > 1:
        raise FederationError(
            "FED.TWO_SOVEREIGNS", "A federation has exactly one Sovereign; pass --sovereign once."
        )
    seen: set[str] = set()
    for n in nodes:
        if n.role not in ROLES:
            raise FederationError(
                "FED.BAD_ROLE", f"Unknown node role {n.role!r}; expected one of {', '.join(ROLES)}."
            )
        if not _NAME.match(n.name):
            raise FederationError(
                "FED.BAD_NODE_NAME",
                f"Node name {n.name!r} is not a DNS label: use 1-63 lower-case letters, "
                "digits and inner hyphens (e.g. site-a).",
                node=n.name,
            )
        if n.name in seen or n.name == "ca":
            raise FederationError(
                "FED.DUPLICATE_NODE",
                f"Node name {n.name!r} is used twice (or is the reserved name 'ca'); "
                "give every node its own name.",
                node=n.name,
            )
        seen.add(n.name)


def _name(federation: str, common: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a key; the
    temporary file is created with its final mode, so a key is never readable by others."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _node_cert(
    node: NodeSpec,
    federation: str,
    ca_name: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
) -> tuple[bytes, bytes]:
    """One node's certificate (PEM) and its new key (PEM), signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(federation, node.name, node.role))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(node.name),
                    # Loopback names, so a test deployment on one machine verifies.
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.UniformResourceIdentifier(f"{_URI_PREFIX}{node.role}/{node.name}"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_pki(
    out: Path,
    nodes: Sequence[NodeSpec],
    *,
    federation: str = "maos",
    force: bool = False,
    now: dt.datetime | None = None,
) -> PkiFiles:
    """Make a CA and a certificate per node under ``out``.

    Refuses (``FED.CERTS_EXIST``) a directory that already holds files unless ``force``:
    overwriting a CA silently would cut every node that trusts the old one off. Everything
    is checked and generated before the first file is written.
    """
    _check(nodes)
    if out.exists() and not out.is_dir():
        raise FederationError(
            "FED.CERTS_NOT_DIR", f"{out} exists and is not a directory; choose another --out."
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FederationError(
            "FED.CERTS_EXIST",
            f"{out} is not empty; choose an empty --out, or pass --force to replace "
            "the CA and certificates there (nodes that trust the old CA will be refused).",
            out=str(out),
        )
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(federation, f"{federation} federation CA", "ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    issued = [(node, *_node_cert(node, federation, ca_name, ca_key, start)) for node in nodes]
    out.mkdir(parents=True, exist_ok=True)
    files = PkiFiles.at(out, nodes)
    _write(files.ca_key, _pem_key(ca_key), 0o600)
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    for (_node, cert_pem, key_pem), (_, cert_path, key_path) in zip(
        issued, files.nodes, strict=True
    ):
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    return files


def verify_node_cert(
    cert_pem: bytes, ca_pem: bytes, *, now: dt.datetime | None = None
) -> NodeIdentity:
    """Verify a node's certificate against the federation's CA and say who it names.

    Chain, validity and key usage are checked by cryptography's X.509 verifier; a
    certificate from another CA, expired, or without a MAOS node URI is refused
    (``FED.BAD_CERT``), never read as someone.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        store = Store(x509.load_pem_x509_certificates(ca_pem))
        builder = PolicyBuilder().store(store)
        if now is not None:
            builder = builder.time(now)
        verified = builder.build_client_verifier().verify(cert, [])
    except (ValueError, VerificationError) as exc:
        raise FederationError(
            "FED.BAD_CERT", f"The certificate does not verify against the CA: {exc}."
        ) from None
    uris = [
        san.value
        for san in verified.subjects or ()
        if isinstance(san, x509.UniformResourceIdentifier) and san.value.startswith(_URI_PREFIX)
    ]
    if len(uris) != 1:
        raise FederationError(
            "FED.BAD_CERT", "The certificate names no MAOS node (no maos://node/ URI)."
        )
    role, _, name = uris[0].removeprefix(_URI_PREFIX).partition("/")
    if role not in ROLES or not _NAME.match(name):
        raise FederationError("FED.BAD_CERT", f"The certificate's node URI {uris[0]!r} is invalid.")
    return NodeIdentity(name=name, role=role)


def cert_pin(cert_pem: bytes) -> str:
    """A certificate's pin as nats-server's ``pinned_certs`` reads it: the hex SHA-256 of
    its DER SubjectPublicKeyInfo. A rotated certificate has a new key, so a new pin."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise FederationError("FED.BAD_CERT", f"Not a PEM certificate: {exc}.") from None
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def rotate_cert(
    out: Path, name: str, *, now: dt.datetime | None = None
) -> tuple[NodeIdentity, Path, Path]:
    """Issue node ``name`` a new certificate and key from the CA under ``out`` (the layout
    `issue_pki` writes), in place of its current ones, same name and role: who it is, and
    the certificate and key files.

    The new key makes a new pin, so once the Commander admits the new certificate
    (`maos federation admit --cert`) the old one is unpinned and refused. Everything is
    read and checked before a file is written (``FED.BAD_CERT``, ``FED.NO_CA``)."""
    if not _NAME.match(name):
        raise FederationError("FED.BAD_NODE_NAME", f"{name!r} is not a node name.")
    files = PkiFiles.at(out, [NodeSpec(name, "pawn")])
    try:
        ca_pem, ca_key_pem = files.ca_cert.read_bytes(), files.ca_key.read_bytes()
        old_pem = files.cert(name).read_bytes()
    except OSError as exc:
        raise FederationError(
            "FED.NO_CA",
            f"Cannot read {exc.filename}: --out must hold the CA (ca.crt, ca.key) and "
            f"{name}.crt, as `maos node certs` wrote them.",
        ) from None
    ident = verify_node_cert(old_pem, ca_pem, now=now)
    if ident.name != name:
        raise FederationError("FED.BAD_CERT", f"{name}.crt names {ident.name}, not {name}.")
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise FederationError("FED.BAD_CERT", "ca.key is not the federation CA's EC key.")
    old = x509.load_pem_x509_certificate(old_pem)
    org = old.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    federation = str(org[0].value) if org else "maos"
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    cert_pem, key_pem = _node_cert(
        NodeSpec(name, ident.role), federation, ca_cert.subject, ca_key, start
    )
    _write(files.key(name), key_pem, 0o600)
    _write(files.cert(name), cert_pem, 0o644)
    return ident, files.cert(name), files.key(name)
