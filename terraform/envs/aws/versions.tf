terraform {
  required_version = ">= 1.10" # S3 backend locking with use_lockfile

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }

  # Remote state in S3 with S3-native locking (a .tflock object next to the state). Bucket and region come from a
  # backend config file so this folder names no account: copy backend.hcl.example to backend.hcl, then
  # `modelfleet infra init --env aws` (or `terraform init -backend-config=backend.hcl`).
  backend "s3" {
    key          = "modelfleet/aws/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { "modelfleet:environment" = var.environment, "managed-by" = "terraform" })
  }
}
