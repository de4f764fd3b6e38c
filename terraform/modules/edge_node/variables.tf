variable "name" {
  description = "Name prefix of every resource of this node group, e.g. \"fra\" gives instances fra-gpu-01, fra-gpu-02, ..."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.name))
    error_message = "name must be 2-32 lowercase letters, digits or dashes, starting with a letter and not ending with a dash."
  }
}

variable "node_class" {
  description = "Node class: cpu (x86_64, general purpose), gpu (x86_64 with an NVIDIA GPU and its drivers) or arm (arm64, AWS Graviton)."
  type        = string

  validation {
    condition     = contains(["cpu", "gpu", "arm"], var.node_class)
    error_message = "node_class must be one of cpu, gpu, arm."
  }
}

variable "instance_count" {
  description = "How many nodes of this class to run."
  type        = number
  default     = 1

  validation {
    condition     = var.instance_count >= 0 && var.instance_count <= 99 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be a whole number from 0 to 99."
  }
}

variable "instance_type" {
  description = "EC2 instance type; null picks the class default (cpu: c7i.large, gpu: g5.xlarge, arm: c7g.large). An arm node needs a Graviton type (c7g, m7g, t4g, ...), a gpu node a GPU type (g4dn, g5, g6, p4d, ...)."
  type        = string
  default     = null

  validation {
    condition     = var.instance_type == null || can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like family.size, e.g. c7g.large."
  }
}

variable "environment" {
  description = "Environment the nodes belong to (an Ansible group of the same name, e.g. staging or production)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,31}$", var.environment))
    error_message = "environment must be 1-32 lowercase letters, digits or underscores, starting with a letter (it becomes an Ansible group name)."
  }
}

variable "vpc_id" {
  description = "VPC of the nodes' security group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Subnet the nodes are started in."
  type        = string

  validation {
    condition     = can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id must be a subnet id such as subnet-0123456789abcdef0."
  }
}

variable "associate_public_ip_address" {
  description = "Give each node a public IPv4 address (and report it as the node's address)."
  type        = bool
  default     = false
}

variable "admin_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed to reach SSH (the Ansible controller, a bastion). Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidr_blocks) > 0 && alltrue([for c in var.admin_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidr_blocks must list at least one valid IPv4 CIDR block, and SSH is never opened to 0.0.0.0/0."
  }
}

variable "monitoring_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed to reach the model agent's port (Prometheus, the operator console). Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = length(var.monitoring_cidr_blocks) > 0 && alltrue([for c in var.monitoring_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "monitoring_cidr_blocks must list at least one valid IPv4 CIDR block, and the agent port is never opened to 0.0.0.0/0."
  }
}

variable "egress_cidr_blocks" {
  description = "IPv4 CIDR blocks the nodes may reach over HTTPS (artifact store, package mirrors). DNS and NTP of the VPC are not filtered by security groups."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.egress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "egress_cidr_blocks must be valid IPv4 CIDR blocks."
  }
}

variable "ssh_port" {
  description = "TCP port of the nodes' SSH server."
  type        = number
  default     = 22

  validation {
    condition     = var.ssh_port >= 1 && var.ssh_port <= 65535
    error_message = "ssh_port must be a TCP port (1-65535)."
  }
}

variable "agent_port" {
  description = "TCP port the model agent listens on (modelfleet_agent_port)."
  type        = number
  default     = 8080

  validation {
    condition     = var.agent_port >= 1 && var.agent_port <= 65535 && var.agent_port != 22
    error_message = "agent_port must be a TCP port (1-65535) other than 22."
  }
}

variable "key_name" {
  description = "EC2 key pair for SSH; null when keys come from elsewhere (e.g. EC2 Instance Connect)."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Root volume size in GiB; null picks the class default (cpu and arm: 30, gpu: 100, as the NVIDIA image is larger)."
  type        = number
  default     = null

  validation {
    condition     = var.root_volume_size == null ? true : var.root_volume_size >= 20 && var.root_volume_size <= 2000
    error_message = "root_volume_size must be between 20 and 2000 GiB."
  }
}

variable "root_volume_kms_key_arn" {
  description = "KMS key for the encrypted root volume; null uses the account's default EBS key."
  type        = string
  default     = null

  validation {
    condition     = var.root_volume_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.root_volume_kms_key_arn))
    error_message = "root_volume_kms_key_arn must be a KMS key ARN."
  }
}

variable "artifact_bucket_arn" {
  description = "ARN of the artifact store bucket (modules/artifact_store output bucket_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket_arn))
    error_message = "artifact_bucket_arn must be an S3 bucket ARN such as arn:aws:s3:::my-bucket."
  }
}

variable "artifact_prefix" {
  description = "Key prefix of the release bundles in the bucket; the nodes' instance profile can read objects under it and nothing else."
  type        = string
  default     = "bundles/"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/$", var.artifact_prefix))
    error_message = "artifact_prefix must be a non-empty key prefix ending in a slash, e.g. bundles/."
  }
}

variable "tags" {
  description = "Tags for every resource; the module adds Name, modelfleet:class, modelfleet:arch and modelfleet:environment."
  type        = map(string)
  default     = {}
}
