#!/usr/bin/env bash
# Starts dsreg-collector on its defaults (./dsreg.db, gRPC 127.0.0.1:50051, HTTP 127.0.0.1:9184),
# feeds it every bundled dsregcmd capture through `dsreg-agent send` (one device per capture),
# prints where to look, and keeps the collector in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPC=${DSREG_GRPC_LISTEN:-127.0.0.1:50051}
HTTP=${DSREG_HTTP_LISTEN:-127.0.0.1:9184}
DB=${DSREG_DB:-./dsreg.db}

echo "demo: building dsreg-collector and dsreg-agent…"
cargo build -q -p dsreg-collector -p dsreg-agent
BIN=${CARGO_TARGET_DIR:-target}/debug

READY=$(mktemp -u "${TMPDIR:-/tmp}/dsreg-demo-ready.XXXXXX")
"$BIN/dsreg-collector" --grpc-listen "$GRPC" --http-listen "$HTTP" --db "$DB" --ready-file "$READY" &
COLLECTOR=$!
trap 'kill -TERM $COLLECTOR 2>/dev/null; wait $COLLECTOR 2>/dev/null; rm -f "$READY"' EXIT INT TERM

# Wait until both listeners are bound (the collector writes the ready file), at most ~20 s.
for _ in $(seq 1 200); do
  [ -s "$READY" ] && break
  if ! kill -0 "$COLLECTOR" 2>/dev/null; then
    echo "demo: dsreg-collector exited during start-up (is $GRPC or $HTTP already in use?)" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$READY" ] || { echo "demo: dsreg-collector did not become ready" >&2; exit 1; }

echo "demo: feeding the bundled captures"
for f in endpoint-agent/testdata/dsregcmd/*.txt; do
  name=$(basename "$f" .txt)
  "$BIN/dsreg-agent" send --collector "http://$GRPC" --status-file "$f" \
    --machine-id "demo-$name" --hostname "$(echo "$name" | cut -c1-40)" \
    --spool-dir "${DB}.demo-spool" >/dev/null \
    || echo "demo: $name was not delivered (see above)"
done

cat <<MSG

demo: the collector is running. Try:
  curl -s http://$HTTP/api/v1/failures
  curl -s 'http://$HTTP/api/v1/devices?phase=discover'
  curl -s http://$HTTP/api/v1/devices/demo-domain-joined-discover-0x801c001d-elevated-ws2022
  curl -s http://$HTTP/metrics | grep ^dsreg_
Press Ctrl-C to stop.
MSG
wait $COLLECTOR
