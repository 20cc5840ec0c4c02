"""`make keys`: a new CloudFront signing key pair, its private half in SSM, never in Terraform.

What it does, in this order (nothing is written when a step fails):

1. generates an RSA-2048 key pair with ``cryptography``;
2. stores the private key (PEM) in the SSM SecureString parameter
   ``/{app}/{stage}/cloudfront-key/{fingerprint}`` (the AWS managed key ``aws/ssm``; boto3's
   default session, so ``AWS_PROFILE``/``AWS_ENDPOINT_URL`` apply), unless
   ``--no-parameter``. ``fingerprint`` is the first 16 hex digits of the SHA-256 of the
   trimmed public PEM, as ``infra/cloudfront.tf`` computes it;
3. writes the private key to ``infra/.cloudfront_private_key.pem`` (mode 0600, gitignored:
   ``CLOUDFRONT_PRIVATE_KEY_FILE`` for local runs) and the public key to
   ``infra/cloudfront_public_key.pem``;
4. appends the public PEM to ``cloudfront_public_key_pems`` in
   ``infra/cloudfront_keys.auto.tfvars.json`` (Terraform loads it by itself), keeping the
   previous last key: during a rotation CloudFront trusts both, and the API signs with the
   new (last) one. ``--retire`` instead keeps only the last key (once every URL signed
   with the old one has expired: one cache window plus ``URL_EXPIRES_SECONDS``).

Usage: ``python -m scripts.cloudfront_keys [--stage localstack] [--app image-service]
[--no-parameter] [--retire]``; prints the fingerprint and the parameter name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

INFRA = Path(__file__).resolve().parents[1] / "infra"
PRIVATE_KEY_FILE = ".cloudfront_private_key.pem"
PUBLIC_KEY_FILE = "cloudfront_public_key.pem"
TFVARS_FILE = "cloudfront_keys.auto.tfvars.json"
#: Keys CloudFront trusts at once: the current one and, during a rotation, its successor.
MAX_KEYS = 2


def fingerprint(public_pem: str) -> str:
    """First 16 hex digits of the SHA-256 of the trimmed PEM (``infra/cloudfront.tf``)."""
    return hashlib.sha256(public_pem.strip().encode()).hexdigest()[:16]


def parameter_name(app: str, stage: str, public_pem: str) -> str:
    """The SSM parameter the API reads the private key of ``public_pem`` from."""
    return f"/{app}/{stage}/cloudfront-key/{fingerprint(public_pem)}"


def generate() -> tuple[bytes, str]:
    """``(private_pem, public_pem)``: a new RSA-2048 pair (PKCS#1 ``RSA PRIVATE KEY``, what
    ``chalicelib.urls`` loads; SubjectPublicKeyInfo ``PUBLIC KEY``, what CloudFront takes)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem.decode()


def trusted_keys(infra: Path, new_pem: str | None) -> list[str]:
    """The public keys for ``cloudfront_public_key_pems``: the file's last key, then
    ``new_pem`` (None: the last key only, ``--retire``)."""
    path = infra / TFVARS_FILE
    current: list[str] = []
    if path.exists():
        current = list(json.loads(path.read_text()).get("cloudfront_public_key_pems", []))
    keys = current[-1:]
    if new_pem is not None:
        keys.append(new_pem.strip() + "\n")
    return keys[-MAX_KEYS:]


def put_parameter(ssm: Any, name: str, private_pem: bytes) -> None:
    """Store ``private_pem`` in the SecureString parameter ``name`` (never overwritten:
    each key has its own name)."""
    ssm.put_parameter(
        Name=name,
        Value=private_pem.decode(),
        Type="SecureString",
        Description="CloudFront URL signing key of the image service (scripts/cloudfront_keys.py)",
        Overwrite=False,
    )


def main(argv: Sequence[str] | None = None, ssm: Any = None, infra: Path = INFRA) -> int:
    """Run the script (see the module docstring); ``ssm`` and ``infra`` are for tests."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--app", default="image-service")
    parser.add_argument("--stage", default=os.environ.get("STAGE", "localstack"))
    parser.add_argument("--no-parameter", action="store_true", help="do not write to SSM")
    parser.add_argument("--retire", action="store_true", help="trust only the newest key")
    args = parser.parse_args(argv)
    tfvars = infra / TFVARS_FILE
    if args.retire:
        keys = trusted_keys(infra, None)
        tfvars.write_text(json.dumps({"cloudfront_public_key_pems": keys}, indent=2) + "\n")
        print(f"CloudFront now trusts {len(keys)} key(s): {', '.join(map(fingerprint, keys))}")
        return 0
    private_pem, public_pem = generate()
    name = parameter_name(args.app, args.stage, public_pem)
    if not args.no_parameter:
        if ssm is None:
            import boto3

            ssm = boto3.client("ssm")
        put_parameter(ssm, name, private_pem)
    private_path = infra / PRIVATE_KEY_FILE
    private_path.unlink(missing_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    (infra / PUBLIC_KEY_FILE).write_text(public_pem)
    keys = trusted_keys(infra, public_pem)
    tfvars.write_text(json.dumps({"cloudfront_public_key_pems": keys}, indent=2) + "\n")
    where = f"{private_path} only" if args.no_parameter else f"SSM {name}"
    print(f"key {fingerprint(public_pem)}: private key in {where}")
    print(f"CloudFront trusts {len(keys)} key(s) ({tfvars}); the API signs with the last")
    return 0


if __name__ == "__main__":
    sys.exit(main())
