# Module tests without cloud credentials: the aws provider is mocked (its schema comes from the local provider
# mirror, see terraform/mirror.tfrc) and images are overridden. Each file has its own state, so each node class
# starts from fresh instances. Run `terraform test` in the module folder.

mock_provider "aws" {}

variables {
  name                   = "fra"
  node_class             = "cpu"
  instance_count         = 2
  environment            = "staging"
  vpc_id                 = "vpc-0123456789abcdef0"
  subnet_id              = "subnet-0123456789abcdef0"
  admin_cidr_blocks      = ["198.51.100.0/28"]
  monitoring_cidr_blocks = ["10.20.0.0/24", "10.30.0.0/24"]
  artifact_bucket_arn    = "arn:aws:s3:::modelfleet-artifacts"
  tags                   = { team = "ml-platform" }
}

run "arm_nodes_get_the_arm64_image_and_a_graviton_type" {
  command = apply

  variables {
    node_class     = "arm"
    instance_count = 1
    instance_type  = "t4g.medium"
  }

  override_data {
    target = data.aws_ssm_parameter.ami
    values = { insecure_value = "ami-0rrrrrrrrrrrrrrr1" }
  }
  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0rrrrrrrrrrrrrrr1", architecture = "arm64" }
  }

  assert {
    condition     = data.aws_ssm_parameter.ami.name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    error_message = "arm nodes must take the arm64 image"
  }
  assert {
    condition     = aws_instance.this[0].ami == "ami-0rrrrrrrrrrrrrrr1" && aws_instance.this[0].instance_type == "t4g.medium"
    error_message = "arm nodes start from the arm64 image on the requested Graviton type"
  }
  assert {
    condition     = output.nodes[0].arch == "aarch64" && aws_instance.this[0].tags["modelfleet:arch"] == "aarch64"
    error_message = "arm nodes are aarch64 (an arm64 image)"
  }
}
