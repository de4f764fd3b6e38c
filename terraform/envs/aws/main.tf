module "artifact_store" {
  source = "../../modules/artifact_store"

  bucket_name = var.artifact_bucket_name
  tags        = var.tags
}

module "edge_node" {
  source   = "../../modules/edge_node"
  for_each = var.fleet

  name                        = var.name
  node_class                  = each.key
  instance_count              = each.value.count
  instance_type               = each.value.instance_type
  environment                 = var.environment
  vpc_id                      = var.vpc_id
  subnet_id                   = var.subnet_id
  associate_public_ip_address = var.associate_public_ip_address
  admin_cidr_blocks           = var.admin_cidr_blocks
  monitoring_cidr_blocks      = var.monitoring_cidr_blocks
  agent_port                  = var.agent_port
  key_name                    = var.key_name
  artifact_bucket_arn         = module.artifact_store.bucket_arn
  artifact_prefix             = module.artifact_store.artifact_prefix
  tags                        = var.tags
}
