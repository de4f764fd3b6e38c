# The environment's `nodes` output has the one shape every modelfleet environment shares (modelfleet infra
# inventory reads it). The aws provider is mocked; its schema comes from the local mirror (terraform/mirror.tfrc).

mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::example-modelfleet-artifacts" }
  }
  mock_resource "aws_instance" {
    defaults = { private_ip = "10.0.1.10" }
  }
}

override_data {
  target = module.edge_node["cpu"].data.aws_ami.this
  values = { id = "ami-0aaaaaaaaaaaaaaa1", architecture = "x86_64" }
}

override_data {
  target = module.edge_node["arm"].data.aws_ami.this
  values = { id = "ami-0rrrrrrrrrrrrrrr1", architecture = "arm64" }
}

variables {
  region                 = "eu-central-1"
  environment            = "production"
  vpc_id                 = "vpc-0123456789abcdef0"
  subnet_id              = "subnet-0123456789abcdef0"
  admin_cidr_blocks      = ["198.51.100.10/32"]
  monitoring_cidr_blocks = ["10.0.0.0/16"]
  artifact_bucket_name   = "example-modelfleet-artifacts"
  fleet = {
    cpu = { count = 2 }
    arm = { count = 1 }
  }
}

run "nodes_output_has_the_shared_shape" {
  command = apply

  assert {
    condition     = [for n in output.nodes : n.name] == ["edge-cpu-01", "edge-cpu-02", "edge-arm-01"]
    error_message = "nodes lists every node of every class, cpu first"
  }
  assert {
    condition     = alltrue([for n in output.nodes : toset(keys(n)) == toset(["name", "address", "class", "arch", "environment", "ssh_user", "ssh_port"])])
    error_message = "every node has exactly name, address, class, arch, environment, ssh_user, ssh_port"
  }
  assert {
    condition     = [for n in output.nodes : n.arch] == ["x86_64", "x86_64", "aarch64"] && alltrue([for n in output.nodes : n.environment == "production" && n.address == "10.0.1.10"])
    error_message = "arch follows the class; environment and address are the node's"
  }
  assert {
    condition     = output.artifact_bucket == { bucket = module.artifact_store.bucket_id, prefix = "bundles/", region = "eu-central-1" }
    error_message = "artifact_bucket tells deploys where bundles go"
  }
}

run "refuse_an_unknown_class" {
  command = plan

  variables {
    fleet = { tpu = { count = 1 } }
  }

  expect_failures = [var.fleet]
}
