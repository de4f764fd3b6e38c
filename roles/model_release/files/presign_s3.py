#!/usr/bin/env python3
"""Print a presigned S3 GET URL for a release bundle (controller side, boto3). The node needs HTTPS only.

Exit 0 with the URL on stdout; exit 2 with one line on stderr for bad input (empty bucket, a lifetime outside
1 s..7 days, a plain-HTTP endpoint that is not on loopback) or when boto3 cannot sign (no credentials).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from urllib.parse import urlparse

MAX_EXPIRES_S = 604800  # what SigV4 allows


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(message: str) -> int:
    print(f"presign: {message}", file=sys.stderr)
    return 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--expires", type=int, default=900)
    parser.add_argument("--endpoint-url", default="")
    parser.add_argument("--region", default="")
    args = parser.parse_args()
    if not args.bucket:
        return _refuse("model_release_s3_bucket is empty; set it for model_release_source=s3")
    if not args.key:
        return _refuse("model_release_s3_key is empty; set it to the bundle's object key")
    if not 1 <= args.expires <= MAX_EXPIRES_S:
        return _refuse(f"model_release_presign_expires_s={args.expires} must be between 1 and {MAX_EXPIRES_S}")
    endpoint = urlparse(args.endpoint_url) if args.endpoint_url else None
    if endpoint is not None and endpoint.scheme != "https" and not _loopback(endpoint.hostname or ""):
        return _refuse(f"endpoint {args.endpoint_url} is plain HTTP: the URL (a credential while it lasts) and the "
                       "bundle would cross the network in clear; use https:// (plain HTTP only on loopback)")
    import boto3  # controller dependency of modelfleet
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.session.Session().client("s3", endpoint_url=args.endpoint_url or None,
                                                region_name=args.region or None)
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": args.bucket, "Key": args.key}, ExpiresIn=args.expires
        )
    except (BotoCoreError, ClientError) as exc:
        return _refuse(f"cannot presign s3://{args.bucket}/{args.key}: {exc} (the controller needs AWS credentials: "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
