#!/usr/bin/env bash
# Starts dsreg-collector on its defaults (./dsreg.db, gRPC 127.0.0.1:50051, HTTP 127.0.0.1:9184),
# feeds it every bundled dsregcmd capture through `dsreg-agent send` (one device per capture),
# prints where to look, and keeps the collector in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPC=${DSREG_GRPC_LISTEN:-127.0.0.1:50051}
HTTP=${DSREG_HTTP_LISTEN:-127.0.0.1:9184}
DB=${DSREG_DB:-./dsreg.db}

echo "demo: building dsreg-collector and dsreg-agent (release)…"
cargo build --release -q -p dsreg-collector -p dsreg-agent
BIN=target/release

"$BIN/dsreg-collector" --grpc-listen "$GRPC" --http-listen "$HTTP" --db "$DB" &
COLLECTOR=$!
trap 'kill -TERM $COLLECTOR 2>/dev/null; wait $COLLECTOR 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/${HTTP%:*}/${HTTP##*:}") 2>/dev/null; then break; fi
  sleep 0.1
done

echo "demo: feeding the bundled captures"
for f in endpoint-agent/testdata/dsregcmd/*.txt; do
  name=$(basename "$f" .txt)
  "$BIN/dsreg-agent" send --collector "http://$GRPC" --status-file "$f" \
    --machine-id "demo-$name" --hostname "$(echo "$name" | cut -c1-40)" \
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
