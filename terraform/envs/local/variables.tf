variable "node_counts" {
  description = "How many simulated nodes of each class (0-79 each). Nodes are edge-<class>-NN."
  type = object({
    cpu = optional(number, 1)
    gpu = optional(number, 0)
    arm = optional(number, 1)
  })
  default = {}

  validation {
    condition     = alltrue([for n in values(var.node_counts) : n >= 0 && n <= 79 && floor(n) == n])
    error_message = "node_counts must be whole numbers from 0 to 79 per class."
  }
}

variable "environment" {
  description = "Environment of the simulated nodes (their Ansible group)."
  type        = string
  default     = "staging"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,31}$", var.environment))
    error_message = "environment must be 1-32 lowercase letters, digits or underscores, starting with a letter."
  }
}

variable "sim_address_prefix" {
  description = "Loopback /24 of the nodes (sim.address_prefix; `modelfleet infra` passes it). cpu nodes get .1-.79, gpu .81-.159, arm .161-.239."
  type        = string
  default     = "127.0.10"

  validation {
    condition     = can(regex("^127\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$", var.sim_address_prefix))
    error_message = "sim_address_prefix must be three octets in 127.0.0.0/8, e.g. 127.0.10."
  }
}

variable "sim_ssh_port" {
  description = "Port of the simulated fleet's sshd (sim.ssh_port; `modelfleet infra` passes it)."
  type        = number
  default     = 2222

  validation {
    condition     = var.sim_ssh_port >= 1 && var.sim_ssh_port <= 65535
    error_message = "sim_ssh_port must be a TCP port (1-65535)."
  }
}

variable "sim_user" {
  description = "The user the simulated fleet runs as and Ansible logs in as: whoever runs Terraform (`modelfleet infra` passes it; plain terraform: -var sim_user=$USER)."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]*[$]?$", var.sim_user))
    error_message = "sim_user must be a user name."
  }
}

variable "modelfleet_command" {
  description = "The modelfleet executable the provisioners run (`modelfleet infra` puts its own first on PATH)."
  type        = string
  default     = "modelfleet"

  validation {
    condition     = can(regex("^[A-Za-z0-9_./-]+$", var.modelfleet_command))
    error_message = "modelfleet_command must be a command name or path without spaces or shell characters."
  }
}
