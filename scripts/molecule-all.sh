#!/usr/bin/env bash
# Run every molecule scenario (`molecule test -s <name>`): one per role plus fleet_rollout.
# Each scenario brings up its own simulated fleet (own loopback prefix, ssh port and state dir) and tears it
# down. One wheelhouse is shared by all scenarios (and the integration tests): MODELFLEET_WHEELHOUSE_DIR.
#   scripts/molecule-all.sh                 all scenarios
#   scripts/molecule-all.sh model_release   only the ones named
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export MODELFLEET_WHEELHOUSE_DIR="${MODELFLEET_WHEELHOUSE_DIR:-/tmp/modelfleet-wheelhouse}"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=(edge_runtime model_agent model_release endpoint_health fleet_rollout)
fi

# Build the wheelhouse once up front (a no-op when it is current).
python -m modelfleet.runners.wheelhouse --arch "$(uname -m)" --out "$MODELFLEET_WHEELHOUSE_DIR"

failed=()
for s in "${scenarios[@]}"; do
  start=$SECONDS
  echo "== molecule test -s $s"
  if molecule test -s "$s"; then
    echo "== $s passed in $((SECONDS - start)) s"
  else
    echo "== $s FAILED after $((SECONDS - start)) s"
    failed+=("$s")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: all ${#scenarios[@]} scenarios passed"
