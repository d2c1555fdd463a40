#!/usr/bin/env bash
# Runs every benchmark of the bench module and prints benchstat tables and
# the issue-7 targets. Each run starts its own redis-server on loopback
# (redis-server must be on PATH) and, when PostgreSQL is installed, its own
# PostgreSQL for ours-pg, ours-pgcache and scs-pg. The runs are interleaved (COUNT separate
# processes, each running every library in turn) so that the machine's noise
# falls on all libraries alike; compare within one run only.
#
#   bench/run.sh                       # defaults below
#   COUNT=6 BENCHTIME=200ms LOAD_REQUESTS=10000 LOAD_COUNT=5 bench/run.sh
#
# Results are kept in bench/results/ (micro.txt, load.txt, memory.txt).
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-200ms}
LOAD_REQUESTS=${LOAD_REQUESTS:-10000}
LOAD_COUNT=${LOAD_COUNT:-5}
BENCHSTAT=${BENCHSTAT:-golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da}

command -v redis-server >/dev/null || { echo "redis-server is not on PATH" >&2; exit 1; }
mkdir -p results
go test -c -o results/bench.test .
: > results/micro.txt
: > results/load.txt

echo "# micro: $COUNT interleaved runs, -benchtime $BENCHTIME" >&2
for i in $(seq "$COUNT"); do
  echo "  run $i/$COUNT" >&2
  ./results/bench.test -test.run '^$' -test.bench '^Benchmark(Session|UntouchedOverhead)$' -test.benchtime "$BENCHTIME" >> results/micro.txt
done
echo "# end-to-end: $LOAD_COUNT runs of $LOAD_REQUESTS requests over 64 connections" >&2
for i in $(seq "$LOAD_COUNT"); do
  echo "  run $i/$LOAD_COUNT" >&2
  ./results/bench.test -test.run '^$' -test.bench '^BenchmarkLoad$' -test.benchtime "${LOAD_REQUESTS}x" >> results/load.txt
done
./results/bench.test -test.run '^$' -test.bench '^BenchmarkRedisMemory$' -test.benchtime 1x > results/memory.txt

benchstat() { go run "$BENCHSTAT" "$@"; }
echo "## Per request, through each library's middleware (httptest, real cookies, redis-server on loopback)"
benchstat -col /lib results/micro.txt
echo
echo "## End to end: http.Server on loopback, 64 connections, $LOAD_REQUESTS requests per run"
benchstat -col /lib results/load.txt
echo
echo "## Redis memory per session (3 small values)"
benchstat -col /lib results/memory.txt
echo
echo "## Medians and targets"
go run ./cmd/targets results/micro.txt results/load.txt results/memory.txt
