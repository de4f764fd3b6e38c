variable "bucket_name" {
  description = "Name of the S3 bucket holding signed release bundles (globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("^xn--|-s3alias$|--ol-s3$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits or dashes, starting and ending with a letter or digit (no dots: TLS to virtual-hosted buckets breaks on dotted names)."
  }
}

variable "artifact_prefix" {
  description = "Key prefix of the release bundles; nodes' instance profiles read under it (modules/edge_node artifact_prefix)."
  type        = string
  default     = "bundles/"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/$", var.artifact_prefix))
    error_message = "artifact_prefix must be a non-empty key prefix ending in a slash, e.g. bundles/."
  }
}

variable "kms_key_arn" {
  description = "KMS key for server-side encryption (aws:kms with a bucket key); null encrypts with S3-managed keys (AES256). Presigned downloads work with both."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which an overwritten or deleted bundle version is removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 3650
    error_message = "noncurrent_version_expiration_days must be between 1 and 3650."
  }
}

variable "noncurrent_versions_to_keep" {
  description = "Newest noncurrent versions of each object kept regardless of age (0-100)."
  type        = number
  default     = 3

  validation {
    condition     = var.noncurrent_versions_to_keep >= 0 && var.noncurrent_versions_to_keep <= 100
    error_message = "noncurrent_versions_to_keep must be between 0 and 100."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds bundles. Keep false outside throwaway environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource; the module adds modelfleet:role = artifact-store."
  type        = map(string)
  default     = {}
}
