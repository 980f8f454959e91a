# Sourced by the DNS bench scripts: installs the Debian packages of the
# commands they need. Usage: need_packages command=package ...
# shellcheck shell=bash
need_packages() {
  local need=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%=*}
    pkg=${pair#*=}
    [ -x "/usr/sbin/$cmd" ] || command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}
