#!/usr/bin/env bash
# Install (as root with apt) or name the Debian/Ubuntu packages modelfleet needs on this machine.
#   scripts/system-deps.sh run    what `make run` needs (OpenSSH server and client for the simulated fleet)
#   scripts/system-deps.sh test   what `make test` needs on top (PostgreSQL, tmux, rsync, zsh, Prometheus and
#                                 promtool for the tests)
set -euo pipefail
what="${1:-run}"

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
have_cmd ssh && have_cmd ssh-keygen || need+=(openssh-client)
if [ "$what" = "test" ] || [ "$what" = "bench" ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  have_cmd tmux || need+=(tmux)
  have_cmd rsync || need+=(rsync)
  have_cmd zsh || need+=(zsh)  # the shell-completion test drives a real zsh
  { have_cmd prometheus && have_cmd promtool; } || need+=(prometheus)
fi
if [ "$what" = "bench" ]; then
  have_cmd wrk || need+=(wrk)
fi

[ "${#need[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && have_cmd apt-get; then
  echo "modelfleet: installing system packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts services on install; modelfleet runs its own sshd, PostgreSQL and Prometheus, not the
  # system ones.
  exit 0
fi

echo "modelfleet: missing system packages: ${need[*]}" >&2
echo "  fix: sudo apt-get install -y ${need[*]}" >&2
exit 2
