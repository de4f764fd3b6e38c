terraform {
  required_version = ">= 1.9"

  # Built-in resources only (terraform_data): nothing to download. Local state: `modelfleet infra init --env local`
  # puts it under <state_dir>/infra/local/ (-backend-config=path=...); a plain `terraform init` keeps it here.
  backend "local" {}
}
