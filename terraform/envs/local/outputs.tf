output "nodes" {
  description = "Every node: name, address, class, arch, environment, ssh_user, ssh_port (`modelfleet infra inventory` reads this)."
  value = flatten([
    for class in local.classes : [
      for name, node in terraform_data.node : {
        name        = node.output.name
        address     = node.output.address
        class       = node.output.class
        arch        = node.output.arch
        environment = node.output.environment
        ssh_user    = node.output.ssh_user
        ssh_port    = node.output.ssh_port
      } if node.output.class == class
    ]
  ])
}

output "connection" {
  description = "How Ansible reaches the nodes: through the simulated fleet's sshd, key and known_hosts (`modelfleet infra inventory` adds them)."
  value       = "modelfleet-sim"
}
