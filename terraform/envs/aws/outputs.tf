output "nodes" {
  description = "Every node: name, address, class, arch, environment, ssh_user, ssh_port (`modelfleet infra inventory` reads this)."
  value       = flatten([for class in ["cpu", "gpu", "arm"] : try(module.edge_node[class].nodes, [])])
}

output "artifact_bucket" {
  description = "Bucket and prefix for `modelfleet deploy --source s3`."
  value = {
    bucket = module.artifact_store.bucket_id
    prefix = module.artifact_store.artifact_prefix
    region = var.region
  }
}
