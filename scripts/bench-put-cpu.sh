#!/bin/bash
# CPU time of the bale process per PUT, and the rate/latency, for one binary (docs/adr/0030):
#   scripts/bench-put-cpu.sh BALE_BIN N CONCURRENCY [SIZE]
# Starts BALE_BIN `--cores 2 --cache-mb 0` on a fresh data dir, warms with 1,000 PUTs, then
# runs `bale-bench scale --phase load` (N PUTs of SIZE at CONCURRENCY) and reads the process's
# utime+stime from /proc before and after: CPU µs per acknowledged (fdatasynced) PUT. Run two
# binaries alternated to compare them. Needs target/release/bale-bench (or BENCH_BIN).
BIN=$1; N=$2; C=$3; SIZE=${4:-1k}
D=$(mktemp -d /tmp/bale-put-cpu.XXXX)
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")
$BIN serve --listen 127.0.0.1:$PORT --data $D --cores 2 --cache-mb 0 --access-key benchak --secret-key SKSKSKSKSKSKSK --metrics-public > $D.log 2>&1 &
P=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
${BENCH_BIN:-$(dirname "$0")/../target/release/bale-bench} scale --endpoint http://127.0.0.1:$PORT --access-key benchak --secret-key SKSKSKSKSKSKSK --bucket warm --phase load -n 1000 --size $SIZE -c $C --json >/dev/null 2>&1
t0=$(awk '{print $14+$15}' /proc/$P/stat)
R=$(${BENCH_BIN:-$(dirname "$0")/../target/release/bale-bench} scale --endpoint http://127.0.0.1:$PORT --access-key benchak --secret-key SKSKSKSKSKSKSK --bucket bbb --phase load -n $N --size $SIZE -c $C --json | python3 -c "import json,sys; d=json.load(sys.stdin)['reports'][0]; print(round(d['req_per_s']), round(d['p50_us']), round(d['p99_us']), d['errors'])")
t1=$(awk '{print $14+$15}' /proc/$P/stat)
TCK=$(getconf CLK_TCK)
echo "rate/p50/p99/errors $R cpu_us_per_put $(python3 -c "print(round(($t1-$t0)/$TCK*1e6/$N,1))")"
kill $P; wait $P 2>/dev/null
rm -rf $D $D.log
