#!/usr/bin/env python3
"""Print a presigned S3 GET URL for a release bundle (controller side, boto3). The node needs HTTPS only."""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--expires", type=int, default=900)
    parser.add_argument("--endpoint-url", default="")
    parser.add_argument("--region", default="")
    args = parser.parse_args()
    if not args.bucket:
        print("presign: model_release_s3_bucket is empty; set it for model_release_source=s3", file=sys.stderr)
        return 2
    import boto3  # controller dependency of modelfleet

    client = boto3.client("s3", endpoint_url=args.endpoint_url or None, region_name=args.region or None)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": args.bucket, "Key": args.key}, ExpiresIn=args.expires
    )
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
