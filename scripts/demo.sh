#!/usr/bin/env bash
# make demo: start a dev cluster, provision an uploader account, upload a
# sample tree through the write-only proxy with a progress bar, print the
# collection. Everything lives in $DEMO_DIR (default: a new temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
DEMO_DIR=${DEMO_DIR:-$(mktemp -d /tmp/arv-upload-demo.XXXXXX)}
mkdir -p "$DEMO_DIR"
echo "== demo directory: $DEMO_DIR"

"$BIN/arv-server" dev --data "$DEMO_DIR/cluster" 2>"$DEMO_DIR/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$DEMO_DIR/cluster/env" ] && break
  kill -0 $server 2>/dev/null || { cat "$DEMO_DIR/server.log"; exit 1; }
  sleep 0.1
done
[ -s "$DEMO_DIR/cluster/env" ] || { echo "dev cluster did not start; see $DEMO_DIR/server.log"; exit 1; }
sed 's/^/   /' "$DEMO_DIR/server.log"
set -a; . "$DEMO_DIR/cluster/env"; set +a
export XDG_STATE_HOME="$DEMO_DIR/state"

echo "== provisioning an uploader account for the sequencer (as the demo user)"
acct_json=$("$BIN/arv-upload" account create "demo sequencer" --json)
uploader_token=$(printf '%s' "$acct_json" | sed -n 's/.*"api_token": *"\([^"]*\)".*/\1/p')
printf '%s\n' "$acct_json" | sed 's/"api_token": *"[^"]*"/"api_token": "(hidden)"/; s/^/   /'

echo "== generating a sample tree"
SAMPLE="$DEMO_DIR/run-0042"
mkdir -p "$SAMPLE/fastq" "$SAMPLE/qc/per sample" "$SAMPLE/empty dir"
head -c $((150 * 1024 * 1024)) /dev/urandom >"$SAMPLE/fastq/lane1_R1.fastq"
head -c $((40 * 1024 * 1024)) /dev/urandom >"$SAMPLE/fastq/lane1_R2.fastq"
for i in $(seq -w 1 300); do
  printf 'sample %s: reads=%d\n' "$i" "$RANDOM" >"$SAMPLE/qc/per sample/s$i.txt"
done
printf 'run 42\n' >"$SAMPLE/SampleSheet.csv"
: >"$SAMPLE/empty.flag"
du -sh "$SAMPLE" | sed 's/^/   /'

echo "== uploading with the uploader token (through the proxy, replication 2)"
uuid=$(ARVADOS_API_TOKEN=$uploader_token "$BIN/arv-upload" start --progress bar \
  --name "run 0042" --link tag:sequencer-run=0042 --property instrument=demo "$SAMPLE")

echo "== collection $uuid"
curl -fsSk -H "Authorization: Bearer $ARVADOS_API_TOKEN" \
  "https://$ARVADOS_API_HOST/arvados/v1/collections/$uuid" |
  python3 -c 'import json,sys; c=json.load(sys.stdin); [print("  ", k, "=", json.dumps(c.get(k))) for k in ("uuid","name","portable_data_hash","file_count","file_size_total","owner_uuid","properties")]; print("   manifest (first lines):"); [print("    ", l[:150]) for l in c["manifest_text"].splitlines()[:6]]' 2>/dev/null ||
  echo "   (install python3 to pretty-print the collection)"
echo "== done; state kept in $DEMO_DIR"
