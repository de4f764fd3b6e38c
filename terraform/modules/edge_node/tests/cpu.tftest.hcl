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

run "cpu_nodes_are_hardened_x86_64" {
  command = apply

  assert {
    condition     = data.aws_ssm_parameter.ami.name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    error_message = "cpu nodes must take the x86_64 Amazon Linux image from its public SSM parameter"
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.ami == "ami-0aaaaaaaaaaaaaaa1" && i.instance_type == "c7i.large"])
    error_message = "cpu nodes must start from the resolved image on the class's default instance type"
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.metadata_options[0].http_tokens == "required" && i.metadata_options[0].http_put_response_hop_limit == 1])
    error_message = "IMDSv2 must be required on every node (http_tokens = required, hop limit 1)"
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.root_block_device[0].encrypted && i.root_block_device[0].volume_type == "gp3"])
    error_message = "every root volume must be encrypted"
  }
  assert {
    condition     = length(aws_instance.this) == 2 && output.nodes[1].name == "fra-cpu-02"
    error_message = "instance_count nodes named <name>-<class>-NN"
  }
  assert {
    condition     = alltrue([for n in output.nodes : n.class == "cpu" && n.arch == "x86_64" && n.environment == "staging" && n.ssh_user == "ec2-user" && n.ssh_port == 22])
    error_message = "nodes output must carry class, arch, environment, ssh user and port"
  }
}

run "ingress_is_ssh_from_admin_and_agent_from_monitoring_only" {
  command = apply

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.ssh) == ["198.51.100.0/28"] && alltrue([for r in aws_vpc_security_group_ingress_rule.ssh : r.from_port == 22 && r.to_port == 22 && r.ip_protocol == "tcp"])
    error_message = "SSH (22/tcp) must be open to the admin CIDRs only"
  }
  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.agent)) == toset(["10.20.0.0/24", "10.30.0.0/24"]) && alltrue([for r in aws_vpc_security_group_ingress_rule.agent : r.from_port == 8080 && r.to_port == 8080 && r.ip_protocol == "tcp"])
    error_message = "the agent port (8080/tcp) must be open to the monitoring CIDRs only"
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_egress_rule.https : r.from_port == 443 && r.to_port == 443])
    error_message = "egress is HTTPS only"
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.vpc_security_group_ids == toset([aws_security_group.this.id])])
    error_message = "nodes must carry exactly the module's security group"
  }
}

run "instance_profile_reads_the_artifact_prefix_only" {
  command = apply

  assert {
    condition     = jsondecode(aws_iam_role_policy.read_artifacts.policy).Statement[0].Resource == ["arn:aws:s3:::modelfleet-artifacts/bundles/*"]
    error_message = "objects can be read under the artifact prefix only"
  }
  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_role_policy.read_artifacts.policy).Statement : s.Action])) == toset(["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"])
    error_message = "the instance profile may only read (get and list), never write or delete"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.read_artifacts.policy).Statement[1].Condition.StringLike["s3:prefix"] == ["bundles/*"]
    error_message = "listing is limited to the artifact prefix"
  }
  assert {
    condition     = alltrue([for i in aws_instance.this : i.iam_instance_profile == aws_iam_instance_profile.this.name])
    error_message = "every node carries the read-only instance profile"
  }
}

run "tags_name_class_arch_and_environment" {
  command = apply

  assert {
    condition     = aws_instance.this[0].tags["modelfleet:class"] == "cpu" && aws_instance.this[0].tags["modelfleet:environment"] == "staging" && aws_instance.this[0].tags["modelfleet:arch"] == "x86_64"
    error_message = "instances must be tagged with class, arch and environment"
  }
  assert {
    condition     = aws_instance.this[0].tags["team"] == "ml-platform" && aws_instance.this[0].tags["Name"] == "fra-cpu-01"
    error_message = "the caller's tags are kept and each node gets its Name"
  }
  assert {
    condition     = aws_security_group.this.tags["modelfleet:environment"] == "staging" && aws_iam_role.this.tags["modelfleet:class"] == "cpu"
    error_message = "every resource carries the tags"
  }
}
