output "bucket_id" {
  description = "Name of the artifact bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the artifact bucket (modules/edge_node artifact_bucket_arn)."
  value       = aws_s3_bucket.this.arn
}

output "bucket_regional_domain_name" {
  description = "Regional endpoint host of the bucket."
  value       = aws_s3_bucket.this.bucket_regional_domain_name
}

output "artifact_prefix" {
  description = "Key prefix under which modelfleet uploads release bundles."
  value       = var.artifact_prefix
}

output "artifact_prefix_arn" {
  description = "ARN pattern of every bundle object (for IAM policies)."
  value       = "${aws_s3_bucket.this.arn}/${var.artifact_prefix}*"
}
