output "nodes" {
  description = "One object per node, the shape every modelfleet environment outputs: name, address, class, arch, environment, ssh_user, ssh_port."
  value = [
    for i, instance in aws_instance.this : {
      name        = format("%s-%02d", local.group_name, i + 1)
      address     = var.associate_public_ip_address ? instance.public_ip : instance.private_ip
      class       = var.node_class
      arch        = local.profile.arch
      environment = var.environment
      ssh_user    = local.profile.ssh_user
      ssh_port    = var.ssh_port
    }
  ]
}

output "instance_ids" {
  description = "EC2 instance ids, in node order."
  value       = aws_instance.this[*].id
}

output "arch" {
  description = "CPU architecture of this node class as the node reports it (x86_64 or aarch64)."
  value       = local.profile.arch
}

output "ami_id" {
  description = "Image the nodes start from (resolved from the public SSM parameter of the class)."
  value       = data.aws_ami.this.id
}

output "ami_parameter" {
  description = "The public SSM parameter the image comes from."
  value       = local.profile.ami_parameter
}

output "security_group_id" {
  description = "Security group of the nodes (SSH from admin CIDRs, agent port from monitoring CIDRs)."
  value       = aws_security_group.this.id
}

output "iam_role_arn" {
  description = "Role of the nodes' instance profile (reads the artifact prefix only)."
  value       = aws_iam_role.this.arn
}

output "instance_profile_name" {
  description = "Instance profile attached to every node."
  value       = aws_iam_instance_profile.this.name
}
