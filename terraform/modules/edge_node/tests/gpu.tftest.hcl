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

run "gpu_nodes_get_the_nvidia_image_and_a_gpu_type" {
  command = apply

  variables {
    node_class     = "gpu"
    instance_count = 1
  }

  override_data {
    target = data.aws_ssm_parameter.ami
    values = { insecure_value = "ami-0ggggggggggggggg1" }
  }
  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0ggggggggggggggg1", architecture = "x86_64" }
  }

  assert {
    condition     = data.aws_ssm_parameter.ami.name == "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
    error_message = "gpu nodes must take the Deep Learning Base image with the NVIDIA driver"
  }
  assert {
    condition     = aws_instance.this[0].ami == "ami-0ggggggggggggggg1" && aws_instance.this[0].instance_type == "g5.xlarge" && aws_instance.this[0].root_block_device[0].volume_size == 100
    error_message = "gpu nodes run on g5.xlarge with a 100 GiB root volume by default"
  }
  assert {
    condition     = output.nodes[0].arch == "x86_64" && aws_instance.this[0].tags["modelfleet:class"] == "gpu"
    error_message = "gpu nodes are x86_64 and tagged gpu"
  }
}
