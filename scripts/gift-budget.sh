#!/usr/bin/env bash
# gift-budget.sh: where a durable gift's CPU goes, next to the floors that
# bound it, in one run on this machine.
#
#   scripts/gift-budget.sh            # 128 clients, 60000 gifts
#   CLIENTS=64 GIFTS=40000 scripts/gift-budget.sh
#
# 1. BenchmarkGifts/sqlite/batch with its HTTP clients in a child process
#    (so the profile holds the server alone) and a CPU profile. The
#    profile's samples are sorted into disjoint buckets by the first
#    pattern that matches their stack (order below) and scaled to the
#    server CPU per gift the benchmark measured from /proc.
# 2. The floors, same binary, right after: BenchmarkGiftsHTTPFloor (the
#    same server and client answering a canned receipt, no ledger) and
#    BenchmarkSQLiteFloor (one row and one balance update per gift, no
#    ledger code, no fsync).
#
# 20k gifts/s on 2 cores leaves 2 s / 20000 = 100 µs of CPU per gift for
# everything: server, client, kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-128}
GIFTS=${GIFTS:-60000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

go test -c -o "$out/ledger.test" ./control/ledger
cd "$out"
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$OLDPWD" describe --always --dirty)"
LEDGER_BENCH_CLIENT=process LEDGER_BENCH_CLIENTS=$CLIENTS ./ledger.test -test.run '^$' \
	-test.bench 'BenchmarkGifts$/sqlite/batch' -test.benchtime "${GIFTS}x" \
	-test.cpuprofile gifts.prof | tee gifts.txt | grep '^Benchmark'
metric() { # metric NAME: the value printed before NAME in gifts.txt
	awk -v m="$1" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($i == m) print $(i-1) }' gifts.txt
}
server=$(metric cpu-us/gift)
client=$(metric client-cpu-us/gift)

# bucket|pattern, first match wins.
buckets=(
	"fsync of the WAL (syncer)|fsyncPath|\\.Fsync"
	"WAL frame writes (pwrite per page)|_walFrames"
	"checkpoints|[wW]alCheckpoint"
	"loopback TCP write (answers)|net\\.\\(\\*conn\\)\\.Write"
	"loopback TCP read (requests)|net\\.\\(\\*conn\\)\\.Read"
	"netpoll / epoll|netpoll|EpollWait"
	"SQLite engine (modernc)|modernc\\.org/"
	"database/sql|database/sql\\."
	"ledger writer and syncer (Go)|ledger\\.\\(\\*Ledger\\)"
	"gift handler (auth, JSON, receipt)|ledger\\.\\(\\*API\\)"
	"fasthttp (parse, dispatch)|fasthttp"
	"GC (background)|gcBgMarkWorker|bgsweep|bgscavenge"
)
total=$(go tool pprof -top -nodecount=1 "$out/ledger.test" gifts.prof 2>/dev/null | sed -n 's/.*Total samples = \([0-9.]*\)\(m\?s\).*/\1 \2/p')
tot_ms=$(awk -v v="${total% *}" -v u="${total#* }" 'BEGIN { print (u == "s") ? v * 1000 : v }')
seconds() { # pprof "Showing nodes accounting for" in ms
	sed -n 's/^Showing nodes accounting for \([0-9.]*\)\(m\?s\),.*/\1 \2/p' | awk '{ print ($2 == "s") ? $1 * 1000 : $1 }'
}
printf '\n%-40s %7s %10s\n' "server CPU per gift, by stack" "share" "µs/gift"
ignore=""
sum=0
for b in "${buckets[@]}"; do
	name=${b%%|*}
	pat=${b#*|}
	args=(-top -nodecount=1000000 -nodefraction=0 -focus="$pat")
	[ -n "$ignore" ] && args+=(-ignore="$ignore")
	ms=$(go tool pprof "${args[@]}" "$out/ledger.test" gifts.prof 2>/dev/null | seconds)
	ms=${ms:-0}
	sum=$(awk -v a="$sum" -v b="$ms" 'BEGIN { print a + b }')
	awk -v n="$name" -v ms="$ms" -v t="$tot_ms" -v s="$server" 'BEGIN { printf "%-40s %6.1f%% %10.1f\n", n, 100 * ms / t, s * ms / t }'
	ignore=${ignore:+$ignore|}$pat
done
awk -v ms="$sum" -v t="$tot_ms" -v s="$server" -v c="$client" 'BEGIN {
	printf "%-40s %6.1f%% %10.1f\n", "rest (scheduler, other runtime)", 100 * (t - ms) / t, s * (t - ms) / t
	printf "%-40s %7s %10.1f\n", "server, measured (/proc)", "", s
	printf "%-40s %7s %10.1f\n", "client (separate process, /proc)", "", c
	printf "%-40s %7s %10.1f   -> at most %.0f gifts/s on 2 busy cores\n", "server + client", "", s + c, 2e6 / (s + c)
}'

echo
echo "# floors, same binary"
LEDGER_BENCH_CLIENT=process LEDGER_BENCH_CLIENTS=$CLIENTS ./ledger.test -test.run '^$' \
	-test.bench 'BenchmarkGiftsHTTPFloor$|BenchmarkSQLiteFloor$|BenchmarkApply$' -test.benchtime "${GIFTS}x" | grep '^Benchmark'
