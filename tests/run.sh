#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run calls).
#
# The Prometheus tier of the tests needs `promtool` and a real `prometheus` (Debian package
# `prometheus`); the UI tier needs `chromium` (Debian) and the API contract tier `schemathesis`
# (PyPI). When they are missing this installs them with apt-get (as root, or through
# sudo); where that is impossible the tier's tests fail with the install command in their
# message — they never pass silently. Then it runs every test of the workspace; extra arguments
# go to `cargo test` (e.g. `tests/run.sh -p dsreg-agent`).
set -euo pipefail
cd "$(dirname "$0")/.."

# install_tier WHAT HINT CHECK INSTALL...: when CHECK (a command) fails, runs INSTALL (as root,
# or through sudo, for apt-get); where that is impossible prints HINT: that tier's tests then
# fail naming the install command — they never pass silently.
install_tier() {
  local what=$1 hint=$2 check=$3
  shift 3
  if eval "$check"; then return 0; fi
  if [ "$1" = apt-get ]; then
    local as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo -n)
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
      echo "tests: installing $what"
      export DEBIAN_FRONTEND=noninteractive
      "${as_root[@]}" apt-get update -qq
      "${as_root[@]}" "$@" >/dev/null
      return 0
    fi
  elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    echo "tests: installing $what"
    "$@" >/dev/null 2>&1 || "$@" --break-system-packages >/dev/null \
      || echo "tests: could not install $what: $hint" >&2
    # pyenv puts new console scripts (`st`) on PATH only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
    return 0
  fi
  echo "tests: $what missing and cannot be installed here; its tests will fail: $hint" >&2
}
install_tier "the Debian package prometheus (promtool + server) for the Prometheus tier" \
  "apt-get install -y prometheus" \
  "command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1" \
  apt-get install -y -qq --no-install-recommends prometheus
# The UI browser tier (tests/tests/e2e/ui_browser.rs) needs headless Chromium.
install_tier "the Debian package chromium for the UI browser tier" \
  "apt-get install -y chromium" \
  "command -v chromium >/dev/null 2>&1" \
  apt-get install -y -qq --no-install-recommends chromium
# The OpenAPI contract tier (tests/tests/e2e/api_schemathesis.rs) runs schemathesis (PyPI).
install_tier "schemathesis (PyPI) for the OpenAPI contract tier" \
  "python3 -m pip install schemathesis" \
  "command -v st >/dev/null 2>&1" \
  python3 -m pip install -q schemathesis
# The package may start its own daemon on :9090; the tests start their own on free ports.
if command -v prometheus >/dev/null 2>&1; then
  { command -v service >/dev/null 2>&1 && service prometheus stop >/dev/null 2>&1; } || true
  pkill -x prometheus >/dev/null 2>&1 || true
fi

# One build for everything: the end-to-end tests start the binaries this build makes
# (dsreg_e2e::process::workspace_bin asks cargo for the same targets, a no-op then), so no
# second feature set of tonic/rustls is compiled in the middle of the run.
exec cargo test --workspace --locked "$@"
