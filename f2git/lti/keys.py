"""The tool's RSA keys: one signs (deep-linking responses, NRPS client assertions), all are
published in the JWKS so platforms can verify, also across a rotation.

Rotation: add the next key to `[lti] extra_key_files` (published, not signing), wait until
platforms have re-read the JWKS, make it `key_file`, and keep the old one in `extra_key_files`
until the last response it signed has expired.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"
KEY_BITS = 2048


class KeyFileError(Exception):
    """A key file that cannot be read or is no RSA private key; names the file."""


@dataclass(frozen=True)
class ToolKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 of the canonical members e, kty, n): a stable `kid`."""
    numbers = public_key.public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    canonical = json.dumps({"e": b64(numbers.e), "kty": "RSA", "n": b64(numbers.n)},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def create_key_file(path: Path) -> None:
    """A new RSA key at `path`, written 0600 from the first byte; never replaces an existing file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def read_key_file(path: Path) -> ToolKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read the LTI key: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{path}: not an RSA key (LTI 1.3 signs with RS256)")
    return ToolKey(kid=thumbprint(key.public_key()), private_key=key)


class ToolKeys:
    """The signing key and the published ones."""

    def __init__(self, signing: ToolKey, extra: list[ToolKey]):
        self.signing = signing
        self.extra = [key for key in extra if key.kid != signing.kid]

    @classmethod
    def load(cls, key_file: Path, extra_key_files: list[Path] = (), *, create: bool = True) -> "ToolKeys":
        """The keys of `[lti]`; the signing key is created (0600) when missing and `create`."""
        if create and not key_file.exists():
            create_key_file(key_file)
        return cls(read_key_file(key_file), [read_key_file(path) for path in extra_key_files])

    @classmethod
    def for_config(cls, lti, *, create: bool = True) -> "ToolKeys":
        return cls.load(lti.key_file, lti.extra_key_files, create=create)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in [self.signing, *self.extra]]}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """A compact JWS of `claims`, RS256, with the signing key's `kid`."""
        return jwt.encode(claims, self.signing.private_key, algorithm=ALGORITHM,
                          headers={**(headers or {}), "kid": self.signing.kid})
