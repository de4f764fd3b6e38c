"""Signed release bundles in an S3 artifact store (AWS S3, MinIO, any S3 API by endpoint).

The controller uploads a bundle once, under a content-addressed key ``<prefix><sha256>/<bundle file name>``:
uploading the same bundle again is a HEAD that finds it (same key, same sha256 in its metadata, same size) and
skips. Nodes hold no credentials: every deploy hands them a short-lived presigned GET URL (made on the
controller by ``roles/model_release/files/presign_s3.py``), and the node checks the download's sha256 before it
verifies the bundle's signature and switches; a tampered object is refused there. :meth:`StoredBundle.extra_vars`
are the role's variables for such a deploy (``model_release_source: s3`` ...).

boto3 is imported inside the functions; an S3 client can be injected (tests, other endpoints).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ArtifactStoreError

DEFAULT_PREFIX = "bundles/"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class S3Location:
    """Where bundles go: a bucket, a key prefix, and (for MinIO or a test server) an endpoint URL."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    endpoint_url: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket or ""):
            raise ArtifactStoreError(f"{self.bucket!r} is not an S3 bucket name",
                                     hint="bucket names are 3-63 lowercase letters, digits, dots or dashes")
        if self.prefix and not self.prefix.endswith("/"):
            raise ArtifactStoreError(f"key prefix {self.prefix!r} must end with a slash", hint="e.g. bundles/")


@dataclass(frozen=True)
class StoredBundle:
    location: S3Location
    key: str
    sha256: str
    size: int
    uploaded: bool  # False: it was there already

    @property
    def url(self) -> str:
        return f"s3://{self.location.bucket}/{self.key}"

    def extra_vars(self, expires_s: int = 900) -> dict[str, Any]:
        """The model_release role's variables for a deploy that pulls this bundle (``model_release_source: s3``);
        the deploy keeps passing ``model_release_bundle`` (the controller's copy, for the manifest checks)."""
        return {
            "model_release_source": "s3",
            "model_release_s3_bucket": self.location.bucket,
            "model_release_s3_key": self.key,
            "model_release_s3_endpoint_url": self.location.endpoint_url or "",
            "model_release_s3_region": self.location.region or "",
            "model_release_bundle_sha256": self.sha256,
            "model_release_presign_expires_s": expires_s,
        }


def bundle_key(prefix: str, sha256: str, filename: str) -> str:
    """``<prefix><sha256>/<filename>``: the content names the key; the file name stays the bundle's."""
    if not SHA256_HEX.fullmatch(sha256):
        raise ArtifactStoreError(f"{sha256!r} is not a sha256 hex digest")
    return f"{prefix}{sha256}/{filename}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def s3_client(location: S3Location) -> Any:
    """A client of its own session: credentials are looked up now (boto3's default session keeps the first)."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=location.endpoint_url or None,
                                          region_name=location.region or None)


def upload_bundle(bundle: Path, location: S3Location, *, sha256: str | None = None,
                  client: Any = None) -> StoredBundle:
    """Upload ``bundle`` unless the store already holds it (same key, sha256 and size)."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise ArtifactStoreError(f"bundle {bundle} does not exist",
                                 hint="build it with `modelfleet bundle MODEL@ALIAS`")
    digest = sha256 or file_sha256(bundle)
    size = bundle.stat().st_size
    key = bundle_key(location.prefix, digest, bundle.name)
    client = client or s3_client(location)
    checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    head = _s3(location, key, client.head_object, missing_ok=True, Bucket=location.bucket, Key=key,
               ChecksumMode="ENABLED")
    if head is not None and _same_content(head, bundle, checksum, size):
        return StoredBundle(location, key, digest, size, uploaded=False)
    with open(bundle, "rb") as body:  # S3 checks the upload against ChecksumSHA256 and refuses a damaged one
        _s3(location, key, client.put_object, Bucket=location.bucket, Key=key, Body=body,
            ContentType="application/gzip", Metadata={"sha256": digest}, ChecksumSHA256=checksum)
    return StoredBundle(location, key, digest, size, uploaded=True)


def _same_content(head: dict[str, Any], bundle: Path, checksum: str, size: int) -> bool:
    """Whether the stored object is this bundle, by what the server computed: its SHA-256 checksum (AWS keeps
    the one checked at upload), else the ETag of a single-part upload (the MD5 of the content; not with SSE-KMS,
    where the object is then uploaded again). The object's metadata alone is not trusted: whoever could
    overwrite the object could copy it."""
    if head.get("ContentLength") != size:
        return False
    if head.get("ChecksumSHA256"):
        return bool(head["ChecksumSHA256"] == checksum)
    md5 = hashlib.md5(usedforsecurity=False)
    with open(bundle, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    return bool(str(head.get("ETag", "")).strip('"') == md5.hexdigest())


def _s3(location: S3Location, key: str, call: Any, *, missing_ok: bool = False, **kwargs: Any) -> Any:
    """One boto3 call; its errors become an ArtifactStoreError naming the bucket and the fix. With
    ``missing_ok`` a missing key (not a missing bucket) returns None."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"s3://{location.bucket}/{key}"
    try:
        return call(**kwargs)
    except NoCredentialsError:
        raise ArtifactStoreError(f"no AWS credentials to reach {where}",
                                 hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        if code == "NoSuchBucket" or (code == "404" and not _bucket_exists(call, location)):
            raise ArtifactStoreError(f"bucket {location.bucket} does not exist",
                                     hint="create it (terraform/modules/artifact_store) or fix the bucket name") \
                from None
        if missing_ok and code in ("404", "NoSuchKey", "NotFound"):
            return None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ArtifactStoreError(f"access to {where} denied ({code})",
                                     hint="use credentials that may read and write under the artifact prefix") \
                from None
        raise ArtifactStoreError(f"{where}: {code}: {error.get('Message') or exc}") from None
    except BotoCoreError as exc:
        raise ArtifactStoreError(f"{where}: {exc}",
                                 hint=f"check the endpoint ({location.endpoint_url or 'AWS'}) and the network") \
            from None


def _bucket_exists(call: Any, location: S3Location) -> bool:
    """A HEAD of a missing key and of a key in a missing bucket both say 404; ask the bucket."""
    from botocore.exceptions import ClientError

    client = getattr(call, "__self__", None)
    if client is None:
        return True
    try:
        client.head_bucket(Bucket=location.bucket)
        return True
    except ClientError:
        return False
