locals {
  classes = ["cpu", "gpu", "arm"]

  # Linux architecture each class declares (the simulated nodes share the controller's CPU; the roles' hardware
  # check is off in simulated inventories).
  class_arch = { cpu = "x86_64", gpu = "x86_64", arm = "aarch64" }

  # Each class has its own address block, so adding a node of one class never moves a node of another.
  class_base = { cpu = 0, gpu = 80, arm = 160 }

  nodes = merge([
    for class in local.classes : {
      for i in range(var.node_counts[class]) : format("edge-%s-%02d", class, i + 1) => {
        class   = class
        address = "${var.sim_address_prefix}.${local.class_base[class] + i + 1}"
      }
    }
  ]...)
}

# One simulated node: `modelfleet sim add` starts it (its own supervisord, an address of the fleet's sshd), `modelfleet
# sim remove` stops it and deletes its folder. Both are idempotent, so a create cut short is finished by the next
# apply (Terraform marks it tainted and replaces it).
resource "terraform_data" "node" {
  for_each = local.nodes

  triggers_replace = {
    class    = each.value.class
    address  = each.value.address
    ssh_port = var.sim_ssh_port
  }

  # destroy-time provisioners may only read self: everything they need is kept here
  input = {
    name        = each.key
    class       = each.value.class
    arch        = local.class_arch[each.value.class]
    address     = each.value.address
    environment = var.environment
    ssh_user    = var.sim_user
    ssh_port    = var.sim_ssh_port
    modelfleet  = var.modelfleet_command
  }

  provisioner "local-exec" {
    command = "${self.input.modelfleet} sim add ${self.input.name} --class ${self.input.class} --address ${self.input.address} --ssh-port ${self.input.ssh_port} --owner terraform:local"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "${self.input.modelfleet} sim remove ${self.input.name}"
  }
}
