#!/usr/bin/env bash
# make bench (end-to-end part): uploads through a dev cluster on this
# machine and prints MB/s, files/s, the ratio to md5sum of the same data,
# and peak RSS. Sizes can be lowered for a quick run:
#   BENCH_BIG_MB=2048 BENCH_SMALL_FILES=20000 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
BIG_MB=${BENCH_BIG_MB:-2048}
SMALL=${BENCH_SMALL_FILES:-20000}
RUNS=${BENCH_RUNS:-3}
W=$(mktemp -d /tmp/arv-upload-bench.XXXXXX)
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$W"' EXIT

"$BIN/arv-server" dev --data "$W/cluster" 2>"$W/server.log" &
server=$!
for _ in $(seq 100); do [ -s "$W/cluster/env" ] && break; sleep 0.1; done
set -a; . "$W/cluster/env"; set +a

echo "== generating $BIG_MB MiB in 8 files and $SMALL files of 4 KiB"
mkdir -p "$W/big" "$W/small"
for i in $(seq 8); do head -c $((BIG_MB * 1024 * 1024 / 8)) /dev/urandom >"$W/big/f$i"; done
python3 - "$W/small" "$SMALL" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(d, "d%03d" % (i // 1000))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%06d" % i), "wb") as f:
        f.write(os.urandom(4096))
PY

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -1; }

echo "== md5sum of the big files (page cache warm)"
cat "$W"/big/* >/dev/null
md5s=$(for r in $(seq "$RUNS"); do /usr/bin/time -f '%e' md5sum "$W"/big/* 2>&1 >/dev/null | tail -1; done | median)
echo "   md5sum: ${md5s}s median of $RUNS"

for kind in big small; do
  secs=(); rss=()
  for r in $(seq "$RUNS"); do
    out=$(XDG_STATE_HOME="$W/state-$kind-$r" /usr/bin/time -f 'TIME %e %M' "$BIN/arv-upload" start --progress none --replication 1 --job "b$kind$r" "$W/$kind" 2>&1 >/dev/null | grep '^TIME')
    secs+=("$(echo "$out" | awk '{print $2}')"); rss+=("$(echo "$out" | awk '{print $3}')")
  done
  s=$(printf '%s\n' "${secs[@]}" | median); m=$(printf '%s\n' "${rss[@]}" | median)
  if [ $kind = big ]; then
    echo "== big:   $BIG_MB MiB in ${s}s = $(awk -v b=$BIG_MB -v s=$s 'BEGIN{printf "%.0f", b*1.048576/s}') MB/s; ratio to md5sum $(awk -v a=$s -v b=$md5s 'BEGIN{printf "%.2f", a/b}'); peak RSS $((m/1024)) MiB"
  else
    echo "== small: $SMALL files in ${s}s = $(awk -v n=$SMALL -v s=$s 'BEGIN{printf "%.0f", n/s}') files/s; peak RSS $((m/1024)) MiB"
  fi
done
