#!/usr/bin/env bash
# make bench (end-to-end part): one table from one run. It measures the
# machine's limits (md5sum on one core and on all cores, sequential write
# with fsync and with O_DIRECT), then each upload path through a dev
# cluster on this machine, and the upload engine alone (its Go benchmarks,
# Keep discarded), each as seconds, MB/s or files/s, the ratio to md5sum of
# the same data, peak RSS and peak anonymous RSS, medians of BENCH_RUNS.
# Then it uploads trees of 1 KiB files of growing count to show that peak
# RSS stays flat as the number of files grows (a second table).
#
# Every upload is a new job (new state directory) into a new dev cluster
# (empty keepstores, so every block is written and fsynced, never found
# already there), and must exit 0 and print a collection whose file count
# and size are those of the tree: a failed upload stops the script, it
# never passes for a fast one.
#
# Settings (environment):
#   BENCH_BIG_MB=2048        big data, in BENCH_BIG_FILES=8 files
#   BENCH_SMALL_FILES=20000  small data, files of 4 KiB
#   BENCH_RUNS=3             runs per row (medians)
#   BENCH_RSS_FILES="1000 200000"  file counts of the RSS series (1 KiB files)
#   BENCH_RSS_RUNS=1         runs per count of the RSS series
#   BENCH_DD_MB=1024         size of the dd write tests
#   BENCH_ONLY=limits,proxy1,proxy2,direct,small,engine,rss   rows to run
#   BENCH_ARVPUT=1           also upstream arv-put (Python SDK) through the
#                            proxy at replication 1, big and small
#   BENCH_PYSDK=DIR          the Python SDK (default ../shared/arvados-python-sdk)
#   BENCH_BIN=DIR (or BIN)   the arv-upload and arv-server to measure
#                            (default bin/ of this checkout)
#   BENCH_SRC=DIR            the source tree whose engine benchmarks run
#                            (default: BIN's parent when it is a checkout of
#                            this module, else this checkout)
# Before/after in one sitting, with an older commit's binaries:
#   git worktree add /tmp/old COMMIT && make -C /tmp/old build
#   BIN=/tmp/old/bin scripts/bench.sh; scripts/bench.sh
# A quick run:
#   BENCH_BIG_MB=256 BENCH_SMALL_FILES=2000 BENCH_RSS_FILES=1000 BENCH_RUNS=1 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bin=${BENCH_BIN:-${BIN:-bin}}
BIN=$(cd "$bin" 2>/dev/null && pwd) || { echo "bench: no directory $bin; build it with make build" >&2; exit 2; }
for b in arv-upload arv-server; do
  [ -x "$BIN/$b" ] || { echo "bench: $BIN/$b is missing; run make build (or make -C that checkout build)" >&2; exit 2; }
done
if [ -n "${BENCH_SRC:-}" ]; then
  SRC=$(cd "$BENCH_SRC" && pwd)
elif [ -f "$BIN/../go.mod" ] && { [ -f "$BIN/../internal/agent/bench_test.go" ] || [ -f "$BIN/../agent/bench_test.go" ]; }; then
  SRC=$(cd "$BIN/.." && pwd)
else
  SRC=$ROOT
fi
BIG_MB=${BENCH_BIG_MB:-2048}
BIG_FILES=${BENCH_BIG_FILES:-8}
SMALL=${BENCH_SMALL_FILES:-20000}
RUNS=${BENCH_RUNS:-3}
RSS_FILES=${BENCH_RSS_FILES:-1000 200000}
RSS_RUNS=${BENCH_RSS_RUNS:-1}
DD_MB=${BENCH_DD_MB:-1024}
ONLY=${BENCH_ONLY:-limits,proxy1,proxy2,direct,small,engine,rss}
[ "${BENCH_ARVPUT:-0}" = 1 ] && ONLY+=,arvput
PYSDK=${BENCH_PYSDK:-$ROOT/../shared/arvados-python-sdk}
NCPU=$(nproc)
for v in BIG_MB BIG_FILES SMALL RUNS RSS_RUNS DD_MB; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_$v=${!v}: use a whole number of 1 or more" >&2; exit 2; }
done
for n in $RSS_FILES; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_RSS_FILES=\"$RSS_FILES\": use file counts separated by spaces" >&2; exit 2; }
done
for row in ${ONLY//,/ }; do
  case $row in limits | proxy1 | proxy2 | direct | small | engine | arvput | rss) ;;
  *) echo "bench: BENCH_ONLY names '$row'; use some of limits,proxy1,proxy2,direct,small,engine,arvput,rss" >&2; exit 2 ;;
  esac
done
want() { [[ ,$ONLY, == *,$1,* ]]; }

W=$(mktemp -d "${TMPDIR:-/tmp}/arv-upload-bench.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "== $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
# calc EXPR: awk arithmetic on the arguments, e.g. calc '%.0f' 'a/b' a=1 b=2.
calc() {
  local fmt=$1 expr=$2 a vars=()
  shift 2
  for a in "$@"; do vars+=(-v "$a"); done
  awk "${vars[@]}" "BEGIN{printf \"$fmt\", $expr}" </dev/null
}
# now: seconds since the epoch with microseconds.
now() { echo "$EPOCHREALTIME"; }
# timed CMD...: runs CMD with output discarded and prints its seconds.
timed() {
  local t0
  t0=$(now)
  "$@" >/dev/null
  calc '%.2f\n' 'b-a' a="$t0" b="$(now)"
}
# warm DIR: reads every file under DIR (untimed), so that the run after it
# finds the data in the page cache, as the table says. Reading it once at
# the start is not enough: some hosts page out memory left unused for a
# while (here DAMON's pageout scheme, /sys/kernel/mm/damon) and 15% of 2 GiB
# read a minute earlier was gone, read from disk again during the upload.
warm() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }
# runs N CMD...: the median seconds of N runs of CMD, each after warm
# $WARM when it is set.
runs() {
  local n=$1 r
  shift
  for r in $(seq "$n"); do
    [ -z "${WARM:-}" ] || warm "$WARM"
    timed "$@"
  done | median
}
# num N: N rounded, with thousands separators.
num() { awk -v n="$1" 'BEGIN{s=sprintf("%.0f", n); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s}'; }

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

# A new dev cluster for every upload: C is its directory.
nclusters=0
C=
start_cluster() {
  nclusters=$((nclusters + 1))
  C=$W/cluster$nclusters
  "$BIN/arv-server" dev --data "$C" 2>"$C.log" &
  server=$!
  for _ in $(seq 300); do
    [ -s "$C/env" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$C/env" ]; then
    echo "bench: the dev cluster did not start ($BIN/arv-server dev); its log:" >&2
    cat "$C.log" >&2
    exit 1
  fi
}
stop_cluster() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
  rm -rf "$C" "$C.log"
}

# peakanon PID: the largest RssAnon (KiB) of PID, sampled until it exits:
# the process's own memory, without the journal's file-backed (reclaimable)
# mmap pages that peak RSS also counts.
peakanon() {
  local p=$1 max=0 k v _
  while [ -r "/proc/$p/status" ]; do
    while read -r k v _; do
      if [ "$k" = RssAnon: ]; then
        [ "$v" -gt "$max" ] && max=$v
        break
      fi
    done <"/proc/$p/status" 2>/dev/null || true
    sleep 0.05
  done
  echo "$max"
}

# measure TAG ENVFILE CMD...: runs CMD with the variables of ENVFILE under
# /usr/bin/time; stdout and stderr go to $W/TAG.out and $W/TAG.err. Sets rc,
# secs, rss (KiB) and anon (KiB). The command execs in place of the shell
# that wrote its PID, so the PID sampled is the command's.
measure() {
  local tag=$1 envfile=$2 tp pid='' vars=()
  shift 2
  mapfile -t vars < <(grep '^[A-Z_]*=' "$envfile")
  rm -f "$W/$tag.pid"
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
  env "${vars[@]}" /usr/bin/time -o "$W/$tag.time" -f 'TIME %x %e %M' \
    bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$W/$tag.pid" "$@" \
    >"$W/$tag.out" 2>"$W/$tag.err" &
  tp=$!
  while [ -z "$pid" ] && kill -0 "$tp" 2>/dev/null; do
    pid=$(cat "$W/$tag.pid" 2>/dev/null || true)
    [ -n "$pid" ] || sleep 0.01
  done
  anon=0
  [ -n "$pid" ] && anon=$(peakanon "$pid")
  wait "$tp" || true
  read -r _ rc secs rss < <(grep '^TIME ' "$W/$tag.time" || echo "TIME 255 0 0")
}

# verify TAG ENVFILE FILES BYTES: the upload's last stdout line is a
# collection UUID, and the cluster has that collection with FILES files of
# BYTES bytes in all.
verify() {
  local tag=$1 envfile=$2 files=$3 bytes=$4 uuid got
  uuid=$(tail -1 "$W/$tag.out" | tr -d '[:space:]')
  if ! [[ $uuid =~ ^[a-z0-9]{5}-4zz18-[a-z0-9]{15}$ ]]; then
    echo "bench: $tag printed no collection UUID (got '$uuid'); stderr:" >&2
    tail -20 "$W/$tag.err" >&2
    exit 1
  fi
  got=$(
    set -a
    # shellcheck disable=SC1090
    . "$envfile"
    curl -fsSk -H "Authorization: Bearer $ARVADOS_API_TOKEN" "https://$ARVADOS_API_HOST/arvados/v1/collections/$uuid" 2>/dev/null |
      python3 -c 'import json,sys; c=json.load(sys.stdin); print(c.get("file_count"), c.get("file_size_total"))' 2>/dev/null
  ) || got="(none: the API server has no such collection)"
  if [ "$got" != "$files $bytes" ]; then
    echo "bench: $tag made collection $uuid with files and bytes $got, want $files $bytes" >&2
    exit 1
  fi
}

# Result rows: one line each in $W/rows, tab-separated: what, data,
# seconds, rate, ratio, peak RSS, peak anonymous RSS.
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$W/rows"; }
: >"$W/rows"
mib() { if [ "$1" = - ]; then echo -; else calc '%.0f' 'k/1024' k="$1"; fi; }
rate_mb() { calc '%.0f' 'm*1.048576/s' m="$1" s="$2"; }

# upload_row LABEL KIND ENV N CMD...: runs CMD N times, each against a new
# cluster with a new state directory, verifies each, and adds the row with
# the medians; KIND is big or small (the data, and the md5sum compared).
upload_row() {
  local label=$1 kind=$2 envname=$3 n=$4 r tag s m a files bytes data
  shift 4
  local -a S=() M=() A=()
  if [ "$kind" = big ]; then
    files=$BIG_FILES bytes=$((BIG_MB * 1048576)) data="$BIG_MB MiB in $BIG_FILES files"
  else
    files=$SMALL bytes=$((SMALL * 4096)) data="$(num "$SMALL") x 4 KiB"
  fi
  for r in $(seq "$n"); do
    start_cluster
    tag=up$nclusters
    note "$label: run $r of $n"
    warm "$W/$kind"
    measure "$tag" "$C/$envname" env XDG_STATE_HOME="$W/state$nclusters" HOME="$W/home$nclusters" "$@" "$W/$kind/"
    if [ "$rc" != 0 ]; then
      echo "bench: $label failed (exit $rc); its stderr:" >&2
      tail -20 "$W/$tag.err" >&2
      exit 1
    fi
    verify "$tag" "$C/$envname" "$files" "$bytes"
    S+=("$secs") M+=("$rss") A+=("$anon")
    stop_cluster
    rm -rf "${W:?}/state$nclusters" "${W:?}/home$nclusters"
  done
  s=$(printf '%s\n' "${S[@]}" | median)
  m=$(printf '%s\n' "${M[@]}" | median)
  a=$(printf '%s\n' "${A[@]}" | median)
  if [ "$kind" = big ]; then
    row "$label" "$data" "$s" "$(rate_mb "$BIG_MB" "$s") MB/s" "$(calc '%.2fx' 's/r' s="$s" r="$md5_big")" "$(mib "$m")" "$(mib "$a")"
  else
    row "$label" "$data" "$s" "$(num "$(calc '%.0f' 'n/s' n="$SMALL" s="$s")") files/s" "$(calc '%.2fx' 's/r' s="$s" r="$md5_small")" "$(mib "$m")" "$(mib "$a")"
  fi
}

need_big=0 need_small=0
for r in limits proxy1 proxy2 direct arvput; do want $r && need_big=1; done
for r in small arvput; do want $r && need_small=1; done

# The checkout BIN sits in, when it is one (bin/ may be older than it).
bin_rev=$(git -C "$BIN/.." describe --always --dirty 2>/dev/null || echo "no git")
bin_rev="checkout $bin_rev"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
note "binaries: $BIN ($bin_rev); engine benchmarks from $SRC; $NCPU cores; runs per row: $RUNS"
note "work directory: $W on $(df --output=source,fstype "$W" | tail -1 | tr -s ' ')"

if [ $need_big = 1 ]; then
  note "generating $BIG_MB MiB in $BIG_FILES files"
  mkdir -p "$W/big"
  for i in $(seq "$BIG_FILES"); do head -c $((BIG_MB * 1048576 / BIG_FILES)) /dev/urandom >"$W/big/f$i"; done
  # Integer division may leave the last bytes out: let the total be exact.
  head -c $((BIG_MB * 1048576 - BIG_MB * 1048576 / BIG_FILES * BIG_FILES)) /dev/urandom >>"$W/big/f$BIG_FILES"
  cat "$W"/big/* >/dev/null
  note "md5sum of the big data, one core (page cache warm)"
  md5_big=$(WARM=$W/big runs "$RUNS" md5sum "$W"/big/*)
  row "md5sum, 1 core, page cache warm" "$BIG_MB MiB in $BIG_FILES files" "$md5_big" "$(rate_mb "$BIG_MB" "$md5_big") MB/s" 1.00x - -
fi

if want limits; then
  note "md5sum of the big data on $NCPU cores ($NCPU md5sum at once over the files)"
  md5par() { printf '%s\0' "$W"/big/* | xargs -0 -n 1 -P "$NCPU" md5sum; }
  s=$(WARM=$W/big runs "$RUNS" md5par)
  row "md5sum, $NCPU cores ($NCPU processes)" "$BIG_MB MiB in $BIG_FILES files" "$s" "$(rate_mb "$BIG_MB" "$s") MB/s" "$(calc '%.2fx' 's/r' s="$s" r="$md5_big")" - -
  # The ratio of a write row is the time writing the big data once at that
  # speed would take, over md5sum's.
  note "sequential write of $DD_MB MiB with fsync and with O_DIRECT, into $W"
  ddw() { dd if=/dev/zero of="$W/dd.tmp" bs=1M count="$DD_MB" status=none "$@" && rm -f "$W/dd.tmp"; }
  s=$(runs "$RUNS" ddw conv=fsync)
  row "write + fsync (dd conv=fsync)" "$DD_MB MiB" "$s" "$(rate_mb "$DD_MB" "$s") MB/s" "$(calc '%.2fx' 's*b/d/r' s="$s" b="$BIG_MB" d="$DD_MB" r="$md5_big")" - -
  if dd if=/dev/zero of="$W/dd.tmp" bs=1M count=1 oflag=direct status=none 2>/dev/null; then
    s=$(runs "$RUNS" ddw oflag=direct conv=fsync)
    row "write O_DIRECT (dd oflag=direct)" "$DD_MB MiB" "$s" "$(rate_mb "$DD_MB" "$s") MB/s" "$(calc '%.2fx' 's*b/d/r' s="$s" b="$BIG_MB" d="$DD_MB" r="$md5_big")" - -
  else
    rm -f "$W/dd.tmp"
    row "write O_DIRECT (dd oflag=direct)" "$DD_MB MiB" - "refused by this filesystem" - - -
  fi
  # The keepstore's own write path, no network: two 64 MiB blocks at once
  # (as two upload threads send them), each hashed, written with O_DIRECT
  # and made durable (fdatasync, rename, directory fsync) into $TMPDIR's
  # filesystem, where the dev cluster keeps its blocks: what the disk gives
  # the keepstore's write pattern. Replication 1 writes the big data once,
  # 2 twice. Each op waits for both blocks, so an upload, which keeps
  # blocks in flight, can do a little better; on a disk whose speed varies
  # from minute to minute (a shared virtual disk) the rows differ more.
  if [ -d "$SRC/internal/keepstore" ]; then
    note "keepstore write path alone: go test -bench 'BenchmarkDirVolumePut_StreamConcurrent/2\$' ./internal/keepstore/ in $SRC"
    (cd "$SRC" && go test -run '^$' -bench 'BenchmarkDirVolumePut_StreamConcurrent/2$' -benchtime 4x -count "$RUNS" ./internal/keepstore/) >"$W/ksbench.out" 2>&1 || {
      echo "bench: the keepstore benchmark failed:" >&2
      cat "$W/ksbench.out" >&2
      exit 1
    }
    mbs=$(awk '$1 ~ /^BenchmarkDirVolumePut_StreamConcurrent\/2(-[0-9]+)?$/ {for (i = 3; i < NF; i++) if ($(i+1) == "MB/s") print $i}' "$W/ksbench.out" | median)
    if [ -n "$mbs" ]; then
      # MB/s is 10^6 bytes a second; the big data is BIG_MB MiB.
      s=$(calc '%.2f' 'b*1.048576/m' b="$BIG_MB" m="$mbs")
      row "keepstore durable writes alone, 2 blocks at once" "$BIG_MB MiB" "$s" "$(calc '%.0f' 'm' m="$mbs") MB/s" "$(calc '%.2fx' 's/r' s="$s" r="$md5_big")" - -
    fi
  fi
fi

if [ $need_small = 1 ]; then
  note "generating $SMALL files of 4 KiB"
  gen "$W/small" "$SMALL" 4096
  md5small() { find "$W/small" -type f -print0 | xargs -0 md5sum; }
  md5small >/dev/null
  md5_small=$(WARM=$W/small runs "$RUNS" md5small)
  row "md5sum, 1 core, page cache warm" "$(num "$SMALL") x 4 KiB" "$md5_small" "$(num "$(calc '%.0f' 'n/s' n="$SMALL" s="$md5_small")") files/s" 1.00x - -
fi

UP=("$BIN/arv-upload" start --progress none)
want proxy1 && upload_row "arv-upload, proxy, replication 1" big env "$RUNS" "${UP[@]}" --replication 1
want proxy2 && upload_row "arv-upload, proxy, replication 2 (make demo)" big env "$RUNS" "${UP[@]}" --replication 2
if want direct; then
  start_cluster
  have_internal=0
  [ -s "$C/env.internal" ] && have_internal=1
  stop_cluster
  if [ $have_internal = 1 ]; then
    upload_row "arv-upload, direct to one keepstore, replication 1" big env.internal "$RUNS" "${UP[@]}" --replication 1
  else
    row "arv-upload, direct to one keepstore, replication 1" "$BIG_MB MiB" - "this arv-server writes no env.internal" - - -
  fi
fi
want small && upload_row "arv-upload, proxy, replication 1" small env "$RUNS" "${UP[@]}" --replication 1

if want arvput; then
  if "$PYSDK/bin/arvados-python" -c 'import googleapiclient, pycurl, arvados' 2>/dev/null; then
    AP=("$PYSDK/bin/arv-put" --no-cache --no-progress --replication 1)
    upload_row "arv-put (upstream), proxy, replication 1" big env "$RUNS" "${AP[@]}"
    upload_row "arv-put (upstream), proxy, replication 1" small env "$RUNS" "${AP[@]}"
  else
    note "arv-put skipped: the Python SDK at $PYSDK does not import (install the Debian packages its README lists, or set BENCH_PYSDK)"
    row "arv-put (upstream)" - - "skipped: Python SDK not usable" - - -
  fi
fi

if want engine; then
  # The engine moved under internal/ after 1b54955; older checkouts have it at ./agent.
  agentpkg=./internal/agent/
  [ -d "$SRC/internal/agent" ] || agentpkg=./agent/
  note "engine alone: go test -bench 'Benchmark(Upload|Plan)_' -benchtime 3x -count $RUNS $agentpkg in $SRC"
  (cd "$SRC" && go test -run '^$' -bench 'Benchmark(Upload|Plan)_' -benchtime 3x -count "$RUNS" -timeout 30m "$agentpkg") >"$W/gobench.out" 2>&1 || {
    echo "bench: the engine benchmarks failed:" >&2
    cat "$W/gobench.out" >&2
    exit 1
  }
  # gofield NAME UNIT: the median over the -count runs of the value before
  # UNIT on the lines of benchmark NAME.
  gofield() {
    awk -v name="$1" -v unit="$2" '$1 ~ "^"name"(-[0-9]+)?$" {for (i = 3; i < NF; i++) if ($(i+1) == unit) print $i}' "$W/gobench.out" | median
  }
  s=$(gofield BenchmarkUpload_bigFiles ns/op) mbs=$(gofield BenchmarkUpload_bigFiles MB/s)
  if [ -n "$s" ]; then
    r=-
    [ -n "${md5_big:-}" ] && r=$(calc '%.2fx' 'm/e' m="$(rate_mb "$BIG_MB" "$md5_big")" e="$mbs")
    row "engine alone, Keep discarded (BenchmarkUpload_bigFiles)" "512 MiB in 4 files" "$(calc '%.2f' 'n/1e9' n="$s")" "$(calc '%.0f' 'm' m="$mbs") MB/s" "$r" - -
  fi
  s=$(gofield BenchmarkUpload_smallFiles ns/op) fs=$(gofield BenchmarkUpload_smallFiles files/s)
  if [ -n "$s" ]; then
    r=-
    [ -n "${md5_small:-}" ] && r=$(calc '%.2fx' 'n/m/e' n="$SMALL" m="$md5_small" e="$fs")
    row "engine alone, Keep discarded (BenchmarkUpload_smallFiles)" "20,000 x 4 KiB" "$(calc '%.2f' 'n/1e9' n="$s")" "$(num "$fs") files/s" "$r" - -
  fi
  s=$(gofield BenchmarkPlan_smallFiles ns/op) fs=$(gofield BenchmarkPlan_smallFiles files/s)
  if [ -n "$s" ]; then
    row "engine planning alone (BenchmarkPlan_smallFiles)" "20,000 files" "$(calc '%.2f' 'n/1e9' n="$s")" "$(num "$fs") files/s" - - -
  fi
fi

# Peak RSS against file count: each tree is generated, uploaded (through
# the proxy, replication 1) and removed in turn to bound disk use. Peak RSS
# counts the block buffers actually filled (up to threads+1 of 64 MiB, so a
# tree under 64 MiB touches less of them), Go heap growth up to GOGC over
# that, and the journal's bbolt pages (mmap), which grow with the file
# count.
if want rss; then
  printf '| files of 1 KiB | seconds | files/s | peak RSS MiB | peak anon MiB | journal MiB |\n|---:|---:|---:|---:|---:|---:|\n' >"$W/rss"
  for n in $RSS_FILES; do
    note "RSS series: generating $n files of 1 KiB"
    gen "$W/rss$n" "$n" 1024
    S=() M=() A=() J=()
    for r in $(seq "$RSS_RUNS"); do
      start_cluster
      note "RSS series: $n files, run $r of $RSS_RUNS"
      tag=rss$nclusters
      measure "$tag" "$C/env" env XDG_STATE_HOME="$W/state$nclusters" "${UP[@]}" --replication 1 "$W/rss$n/"
      if [ "$rc" != 0 ]; then
        echo "bench: the upload of $n files failed (exit $rc); its stderr:" >&2
        tail -20 "$W/$tag.err" >&2
        exit 1
      fi
      verify "$tag" "$C/env" "$n" $((n * 1024))
      S+=("$secs") M+=("$rss") A+=("$anon")
      J+=("$(du -k "$W/state$nclusters"/arv-upload/*.db | awk '{k += $1} END {print k}')")
      stop_cluster
      rm -rf "$W/state$nclusters"
    done
    s=$(printf '%s\n' "${S[@]}" | median)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$(num "$n")" "$s" "$(num "$(calc '%.0f' 'n/s' n="$n" s="$s")")" \
      "$(mib "$(printf '%s\n' "${M[@]}" | median)")" "$(mib "$(printf '%s\n' "${A[@]}" | median)")" \
      "$(calc '%.1f' 'k/1024' k="$(printf '%s\n' "${J[@]}" | median)")" >>"$W/rss"
    rm -rf "$W/rss$n"
  done
fi

echo
echo "arv-upload bench $(date -u +%Y-%m-%dT%H:%MZ): binaries $BIN ($bin_rev), engine from $SRC;"
echo "$NCPU cores, load average $load0 at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end; medians of $RUNS."
echo
echo "| path | data | seconds | rate | x md5sum | peak RSS MiB | peak anon MiB |"
echo "|---|---|---:|---:|---:|---:|---:|"
awk -F '\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$W/rows"
if want rss; then
  echo
  echo "Peak RSS against file count (through the proxy, replication 1; medians of $RSS_RUNS):"
  echo
  cat "$W/rss"
fi
