locals {
  # One profile per node class: CPU architecture, image and instance defaults. Images come from AWS's public SSM
  # parameters, so a new node always starts from the current image of its architecture without an AMI id here.
  class_profiles = {
    cpu = {
      arch              = "x86_64" # as the node's kernel (and Ansible's facts) name it
      ami_arch          = "x86_64" # as EC2 names the image's architecture
      ami_parameter     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
      instance_type     = "c7i.large"
      root_volume_size  = 30
      ssh_user          = "ec2-user"
      accelerator       = "none"
      type_pattern      = "^[a-fh-oq-z][a-z]*[0-9]+[a-fh-z-]*\\." # neither Graviton (c7g, ...) nor GPU (g5, p4d, ...)
      type_requirement  = "an x86_64 type without a GPU (c7i, m7i, t3, ...)"
      image_description = "Amazon Linux 2023 (x86_64)"
    }
    gpu = {
      arch     = "x86_64"
      ami_arch = "x86_64"
      # AWS Deep Learning Base OSS NVIDIA Driver GPU AMI: Amazon Linux 2023 with the NVIDIA driver, CUDA and the
      # container toolkit installed.
      ami_parameter     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
      instance_type     = "g5.xlarge"
      root_volume_size  = 100
      ssh_user          = "ec2-user"
      accelerator       = "nvidia"
      type_pattern      = "^(?:g[0-9]+[a-fh-z]*|p[0-9]+[a-z]*)\\." # x86_64 GPU types; not g5g (arm64)
      type_requirement  = "an NVIDIA GPU type (g4dn, g5, g6, p4d, ...)"
      image_description = "Deep Learning Base OSS NVIDIA Driver GPU AMI (Amazon Linux 2023, x86_64)"
    }
    arm = {
      arch              = "aarch64"
      ami_arch          = "arm64"
      ami_parameter     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
      instance_type     = "c7g.large"
      root_volume_size  = 30
      ssh_user          = "ec2-user"
      accelerator       = "none"
      type_pattern      = "^[a-fh-z][a-z]*[0-9]+g[a-z]*\\." # Graviton: c7g, m7g, t4g, c7gn, r8g, ...
      type_requirement  = "an AWS Graviton (arm64) type (c7g, m7g, t4g, ...)"
      image_description = "Amazon Linux 2023 (arm64)"
    }
  }

  profile          = local.class_profiles[var.node_class]
  instance_type    = coalesce(var.instance_type, local.profile.instance_type)
  root_volume_size = coalesce(var.root_volume_size, local.profile.root_volume_size)
  group_name       = "${var.name}-${var.node_class}"
  bucket_name      = split(":::", var.artifact_bucket_arn)[1]

  tags = merge(var.tags, {
    "modelfleet:class"       = var.node_class
    "modelfleet:arch"        = local.profile.arch
    "modelfleet:environment" = var.environment
  })
}

# -- image ------------------------------------------------------------------------------------------------------

data "aws_ssm_parameter" "ami" {
  name = local.profile.ami_parameter
}

data "aws_ami" "this" {
  owners = ["amazon"]

  filter {
    name   = "image-id"
    values = [data.aws_ssm_parameter.ami.insecure_value]
  }

  lifecycle {
    postcondition {
      condition     = self.architecture == local.profile.ami_arch
      error_message = "The image ${self.id} from ${local.profile.ami_parameter} is ${self.architecture}, but ${var.node_class} nodes need ${local.profile.ami_arch}."
    }
  }
}

# -- network: SSH from the admin CIDRs, the agent port from the monitoring CIDRs, nothing else in ------------------

resource "aws_security_group" "this" {
  name_prefix = "${local.group_name}-"
  description = "modelfleet ${var.node_class} edge nodes (${var.environment}): SSH from admin, agent from monitoring"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = local.group_name })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.admin_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "SSH from admin ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.ssh_port
  to_port           = var.ssh_port
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "agent" {
  for_each = toset(var.monitoring_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "model agent from monitoring ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.agent_port
  to_port           = var.agent_port
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = toset(var.egress_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "HTTPS out to ${each.value} (artifact store, packages)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
  tags              = local.tags
}

# -- identity: read the artifact prefix, nothing else --------------------------------------------------------------

resource "aws_iam_role" "this" {
  name_prefix = "${local.group_name}-"
  description = "modelfleet ${var.node_class} edge nodes (${var.environment}): read release bundles"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "read_artifacts" {
  name = "read-artifact-prefix"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadBundles"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:GetObjectVersion"]
        Resource = ["${var.artifact_bucket_arn}/${var.artifact_prefix}*"]
      },
      {
        Sid       = "ListBundlePrefix"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = [var.artifact_bucket_arn]
        Condition = { StringLike = { "s3:prefix" = ["${var.artifact_prefix}*"] } }
      },
    ]
  })
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${local.group_name}-"
  role        = aws_iam_role.this.name
  tags        = local.tags
}

# -- nodes ------------------------------------------------------------------------------------------------------

resource "aws_instance" "this" {
  count = var.instance_count

  ami                         = data.aws_ami.this.id
  instance_type               = local.instance_type
  subnet_id                   = var.subnet_id
  vpc_security_group_ids      = [aws_security_group.this.id]
  iam_instance_profile        = aws_iam_instance_profile.this.name
  key_name                    = var.key_name
  associate_public_ip_address = var.associate_public_ip_address

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_arn
    volume_type           = "gp3"
    volume_size           = local.root_volume_size
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = format("%s-%02d", local.group_name, count.index + 1) })
  }

  tags = merge(local.tags, { Name = format("%s-%02d", local.group_name, count.index + 1) })

  lifecycle {
    # A new image in the SSM parameter applies to new nodes; existing nodes are replaced on purpose, not by a plan.
    ignore_changes = [ami]

    precondition {
      condition     = can(regex(local.profile.type_pattern, local.instance_type))
      error_message = "instance_type ${local.instance_type} does not fit ${var.node_class} nodes: use ${local.profile.type_requirement}."
    }
  }
}
