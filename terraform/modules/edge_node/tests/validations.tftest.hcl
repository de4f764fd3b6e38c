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

override_data {
  target = data.aws_ssm_parameter.ami
  values = { insecure_value = "ami-0aaaaaaaaaaaaaaa1" }
}

override_data {
  target = data.aws_ami.this
  values = { id = "ami-0aaaaaaaaaaaaaaa1", architecture = "x86_64" }
}

run "refuse_an_image_of_the_wrong_architecture" {
  command = plan

  variables {
    node_class = "arm"
  }

  expect_failures = [data.aws_ami.this]
}

run "refuse_an_x86_type_for_arm_nodes" {
  command = plan

  variables {
    node_class    = "arm"
    instance_type = "c7i.large"
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0rrrrrrrrrrrrrrr1", architecture = "arm64" }
  }

  expect_failures = [aws_instance.this]
}

run "refuse_a_cpu_type_for_gpu_nodes" {
  command = plan

  variables {
    node_class    = "gpu"
    instance_type = "m7i.large"
  }

  expect_failures = [aws_instance.this]
}

run "refuse_an_arm_gpu_type_for_gpu_nodes" {
  command = plan

  variables {
    node_class    = "gpu"
    instance_type = "g5g.xlarge"
  }

  expect_failures = [aws_instance.this]
}

run "refuse_ssh_open_to_the_world" {
  command = plan

  variables {
    admin_cidr_blocks = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidr_blocks]
}

run "refuse_an_unknown_class" {
  command = plan

  variables {
    node_class = "tpu"
  }

  expect_failures = [var.node_class]
}
