# Module tests without cloud credentials: the aws provider is mocked (its schema comes from the local provider
# mirror, see terraform/mirror.tfrc). Run `terraform test` in the module folder.

mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::modelfleet-artifacts"
    }
  }
}

variables {
  bucket_name = "modelfleet-artifacts"
  tags        = { team = "ml-platform" }
}

run "bucket_is_versioned_encrypted_and_private" {
  command = apply

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "versioning must be on"
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "objects must be encrypted at rest (S3-managed keys without a KMS key)"
  }
  assert {
    condition = (aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy
    && aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets)
    error_message = "every public access setting must be blocked"
  }
  assert {
    condition     = one(aws_s3_bucket_ownership_controls.this.rule).object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled"
  }
  assert {
    condition     = aws_s3_bucket.this.force_destroy == false
    error_message = "a bucket holding bundles is not destroyed by default"
  }
}

run "policy_denies_everything_without_tls" {
  command = apply

  assert {
    condition     = jsondecode(aws_s3_bucket_policy.tls_only.policy).Statement[0].Effect == "Deny" && jsondecode(aws_s3_bucket_policy.tls_only.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false"
    error_message = "requests without TLS must be denied"
  }
  assert {
    condition     = jsondecode(aws_s3_bucket_policy.tls_only.policy).Statement[0].Resource == ["arn:aws:s3:::modelfleet-artifacts", "arn:aws:s3:::modelfleet-artifacts/*"]
    error_message = "the TLS rule covers the bucket and every object"
  }
  assert {
    condition     = alltrue([for s in jsondecode(aws_s3_bucket_policy.tls_only.policy).Statement : s.Effect == "Deny"])
    error_message = "the bucket policy only denies: it grants nothing to anyone"
  }
}

run "old_versions_expire" {
  command = apply

  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.this.rule : r.noncurrent_version_expiration[0].noncurrent_days if r.id == "expire-old-bundle-versions"] == [30]
    error_message = "noncurrent versions expire after 30 days by default"
  }
  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.this.rule : r.noncurrent_version_expiration[0].newer_noncurrent_versions if r.id == "expire-old-bundle-versions"] == [3]
    error_message = "the newest 3 noncurrent versions are kept"
  }
  assert {
    condition     = alltrue([for r in aws_s3_bucket_lifecycle_configuration.this.rule : r.status == "Enabled"])
    error_message = "lifecycle rules must be enabled"
  }
}

run "tags_and_outputs" {
  command = apply

  assert {
    condition     = aws_s3_bucket.this.tags["team"] == "ml-platform" && aws_s3_bucket.this.tags["modelfleet:role"] == "artifact-store"
    error_message = "the bucket carries the caller's tags and its role"
  }
  assert {
    condition     = output.artifact_prefix_arn == "arn:aws:s3:::modelfleet-artifacts/bundles/*"
    error_message = "artifact_prefix_arn names every bundle object"
  }
}

run "kms_key_switches_to_aws_kms" {
  command = apply

  variables {
    kms_key_arn = "arn:aws:kms:eu-central-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled
    error_message = "with a KMS key, objects are encrypted with aws:kms and a bucket key"
  }
}

run "refuse_a_dotted_bucket_name" {
  command = plan

  variables {
    bucket_name = "models.example.com"
  }

  expect_failures = [var.bucket_name]
}

run "refuse_a_prefix_without_a_trailing_slash" {
  command = plan

  variables {
    artifact_prefix = "bundles"
  }

  expect_failures = [var.artifact_prefix]
}
