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

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    echo "tests: installing the Debian package prometheus (promtool + server) for the Prometheus tier"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "tests: promtool/prometheus missing and cannot be installed here;" \
      "the Prometheus tier will fail: apt-get install -y prometheus" >&2
  fi
fi
# The UI browser tier (tests/tests/ui_browser.rs) needs headless Chromium (Debian package
# `chromium`); without it that test fails naming this install command.
if ! command -v chromium >/dev/null 2>&1; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    echo "tests: installing the Debian package chromium for the UI browser tier"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "tests: chromium missing and cannot be installed here;" \
      "the UI browser test will fail: apt-get install -y chromium" >&2
  fi
fi
# The OpenAPI contract tier (tests/tests/api_schemathesis.rs) runs schemathesis (PyPI) against
# the real collector; without it that test fails naming this install command.
if ! command -v st >/dev/null 2>&1; then
  if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    echo "tests: installing schemathesis (PyPI) for the OpenAPI contract tier"
    python3 -m pip install -q schemathesis >/dev/null 2>&1 \
      || python3 -m pip install -q --break-system-packages schemathesis >/dev/null \
      || echo "tests: pip could not install schemathesis: python3 -m pip install schemathesis" >&2
    # pyenv puts new console scripts (`st`) on PATH only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  else
    echo "tests: schemathesis missing and pip is not available;" \
      "the OpenAPI contract test will fail: python3 -m pip install schemathesis" >&2
  fi
fi
# The package may start its own daemon on :9090; the tests start their own on free ports.
if command -v prometheus >/dev/null 2>&1; then
  { command -v service >/dev/null 2>&1 && service prometheus stop >/dev/null 2>&1; } || true
  pkill -x prometheus >/dev/null 2>&1 || true
fi

exec cargo test --workspace --locked "$@"
