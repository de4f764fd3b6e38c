variable "region" {
  description = "AWS region of the fleet and the artifact store."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-central-1."
  }
}

variable "environment" {
  description = "Environment name: the nodes' Ansible group (staging, production, ...)."
  type        = string
  default     = "staging"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,31}$", var.environment))
    error_message = "environment must be 1-32 lowercase letters, digits or underscores, starting with a letter."
  }
}

variable "name" {
  description = "Name prefix of the node groups (nodes are <name>-<class>-NN)."
  type        = string
  default     = "edge"
}

variable "vpc_id" {
  description = "VPC of the nodes."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the nodes."
  type        = string
}

variable "associate_public_ip_address" {
  description = "Give nodes public IPv4 addresses (and reach them there); false keeps them private (reach them over a VPN or bastion)."
  type        = bool
  default     = false
}

variable "admin_cidr_blocks" {
  description = "CIDR blocks allowed to reach SSH (the Ansible controller)."
  type        = list(string)
}

variable "monitoring_cidr_blocks" {
  description = "CIDR blocks allowed to reach the model agents (Prometheus, the console)."
  type        = list(string)
}

variable "key_name" {
  description = "EC2 key pair for SSH, or null."
  type        = string
  default     = null
}

variable "artifact_bucket_name" {
  description = "Name of the S3 bucket for release bundles (created here)."
  type        = string
}

variable "fleet" {
  description = "Node groups by class: how many nodes, optionally another instance type. Keys are the classes cpu, gpu and arm."
  type = map(object({
    count         = number
    instance_type = optional(string)
  }))
  default = {
    cpu = { count = 1 }
  }

  validation {
    condition     = alltrue([for class in keys(var.fleet) : contains(["cpu", "gpu", "arm"], class)])
    error_message = "fleet keys must be node classes: cpu, gpu, arm."
  }
}

variable "agent_port" {
  description = "TCP port of the model agents."
  type        = number
  default     = 8080
}

variable "tags" {
  description = "Tags for every resource (the provider adds modelfleet:environment and managed-by)."
  type        = map(string)
  default     = {}
}
