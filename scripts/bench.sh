#!/usr/bin/env bash
# make bench (end-to-end part): uploads through a dev cluster on this
# machine and prints MB/s, files/s, the ratio to md5sum of the same data,
# and peak RSS. Then it uploads trees of 1 KiB files of growing count to
# show that peak RSS stays flat as the number of files grows. Sizes can be
# lowered for a quick run:
#   BENCH_BIG_MB=2048 BENCH_SMALL_FILES=20000 scripts/bench.sh
#   BENCH_RSS_FILES="1000 200000" BENCH_RSS_RUNS=1 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
BIG_MB=${BENCH_BIG_MB:-2048}
SMALL=${BENCH_SMALL_FILES:-20000}
RUNS=${BENCH_RUNS:-3}
RSS_FILES=${BENCH_RSS_FILES:-1000 200000}
RSS_RUNS=${BENCH_RSS_RUNS:-1}
W=$(mktemp -d /tmp/arv-upload-bench.XXXXXX)
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$W"' EXIT

"$BIN/arv-server" dev --data "$W/cluster" 2>"$W/server.log" &
server=$!
for _ in $(seq 100); do [ -s "$W/cluster/env" ] && break; sleep 0.1; done
set -a; . "$W/cluster/env"; set +a

echo "== generating $BIG_MB MiB in 8 files and $SMALL files of 4 KiB"
mkdir -p "$W/big" "$W/small"
for i in $(seq 8); do head -c $((BIG_MB * 1024 * 1024 / 8)) /dev/urandom >"$W/big/f$i"; done
# gen DIR N SIZE: N files of SIZE random bytes in subdirectories of 1000.
gen() {
  python3 - "$@" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, "d%03d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%06d" % i), "wb") as f:
        f.write(os.urandom(size))
PY
}
gen "$W/small" "$SMALL" 4096

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -1; }

echo "== md5sum of the big files (page cache warm)"
cat "$W"/big/* >/dev/null
md5s=$(for r in $(seq "$RUNS"); do /usr/bin/time -f '%e' md5sum "$W"/big/* 2>&1 >/dev/null | tail -1; done | median)
echo "   md5sum: ${md5s}s median of $RUNS"

# upload KIND RUNS: uploads $W/KIND RUNS times, each as a new job, and sets
# s and m to the median seconds and peak RSS (KiB).
# peakanon PID: the largest RssAnon (KiB) of PID, sampled until it exits:
# the process's own memory, without the journal's file-backed (reclaimable)
# mmap pages that peak RSS also counts.
peakanon() {
  local p=$1 max=0 v
  while v=$(awk '/^RssAnon:/ {print $2}' /proc/"$p"/status 2>/dev/null); [ -n "$v" ]; do
    [ "$v" -gt "$max" ] && max=$v
    sleep 0.05
  done
  echo "$max"
}

upload() {
  local kind=$1 runs=$2 r out secs=() rss=() anon=() pid
  for r in $(seq "$runs"); do
    XDG_STATE_HOME="$W/state-$kind-$r" /usr/bin/time -o "$W/time.out" -f 'TIME %x %e %M' "$BIN/arv-upload" start --progress none --replication 1 --job "b$kind$r" "$W/$kind" >/dev/null 2>"$W/upload.err" &
    sleep 0.05
    pid=$(pgrep -n -f "arv-upload start --progress none --replication 1 --job b$kind$r" || true)
    anon+=("$( [ -n "$pid" ] && peakanon "$pid" || echo 0)")
    wait $! || true
    out=$(cat "$W/time.out" "$W/upload.err")
    # A failed upload must not pass for a fast one.
    if ! grep -q '^TIME 0 ' <<<"$out"; then echo "upload of $W/$kind failed:" >&2; echo "$out" >&2; exit 1; fi
    out=$(grep '^TIME' <<<"$out" | cut -d' ' -f1,3-)
    secs+=("$(echo "$out" | awk '{print $2}')"); rss+=("$(echo "$out" | awk '{print $3}')")
  done
  s=$(printf '%s\n' "${secs[@]}" | median); m=$(printf '%s\n' "${rss[@]}" | median); a=$(printf '%s\n' "${anon[@]}" | median)
}

for kind in big small; do
  upload $kind "$RUNS"
  if [ $kind = big ]; then
    echo "== big:   $BIG_MB MiB in ${s}s = $(awk -v b=$BIG_MB -v s=$s 'BEGIN{printf "%.0f", b*1.048576/s}') MB/s; ratio to md5sum $(awk -v a=$s -v b=$md5s 'BEGIN{printf "%.2f", a/b}'); peak RSS $((m/1024)) MiB"
  else
    echo "== small: $SMALL files in ${s}s = $(awk -v n=$SMALL -v s=$s 'BEGIN{printf "%.0f", n/s}') files/s; peak RSS $((m/1024)) MiB"
  fi
done

# Peak RSS against file count: each tree is generated, uploaded and removed
# in turn to bound disk use. Peak RSS counts the block buffers actually
# filled (up to threads+1 of 64 MiB, so a tree under 64 MiB touches less of
# them), Go heap growth up to GOGC over that, and the journal's bbolt pages
# (mmap), which grow with the file count.
for n in $RSS_FILES; do
  echo "== generating $n files of 1 KiB"
  gen "$W/rss$n" "$n" 1024
  upload "rss$n" "$RSS_RUNS"
  jm=$(du -m "$W"/state-rss"$n"-1/arv-upload/*.db | awk '{print $1}')
  echo "== rss:   $n files in ${s}s = $(awk -v n=$n -v s=$s 'BEGIN{printf "%.0f", n/s}') files/s; peak RSS $((m/1024)) MiB (anonymous $((a/1024)) MiB); journal $jm MiB"
  rm -rf "$W/rss$n" "$W"/state-rss"$n"-*
done
