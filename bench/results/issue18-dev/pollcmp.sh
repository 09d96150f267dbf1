#!/usr/bin/env bash
# ad-hoc: idle CPU, c=1 p50 and c=16 req/s for three polling modes of one binary
set -euo pipefail
BALE=${1:-/tmp/pollw/bale-poll}
BENCH=/work/wt-poll/target/release/bale-bench
D=${D:-3s}
ROUNDS=${ROUNDS:-2}
work=$(mktemp -d /tmp/pollcmp.XXXX)
declare -A PORT PID
trap 'for p in "${PID[@]}"; do kill $p 2>/dev/null; done; sleep 0.5; rm -rf $work' EXIT
i=0
for mode in ${MODES:-"poll:" "nopoll:--poll-us 0" "spin50:--spin-us 50"}; do
  name=${mode%%:*}; flags=${mode#*:}
  port=$((31000 + i)); i=$((i+1))
  chrt -f 10 taskset -c 0 $BALE serve --listen 127.0.0.1:$port --data $work/$name --cores 1 --access-key akey --secret-key sk12345678 $flags > $work/$name.log 2>&1 &
  PID[$name]=$!; PORT[$name]=$port
done
sleep 1
for name in ${NAMES:-poll nopoll spin50}; do
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:${PORT[$name]}/health && break; sleep 0.1; done
  E="--endpoint http://127.0.0.1:${PORT[$name]} --access-key akey --secret-key sk12345678 --bucket bench --prefix s/ -n 500 --size 4k"
  $BENCH load $E -c 4 > /dev/null
  $BENCH get $E -c 16 --requests 5000 > /dev/null
done
hz=$(getconf CLK_TCK)
for name in ${NAMES:-poll nopoll spin50}; do
  pid=${PID[$name]}
  t0=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 10; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "$name idle_cpu_pct $(python3 -c "print(round(($t1-$t0)/$hz/10*100,3))")"
done
for r in $(seq $ROUNDS); do
 for c in 1 16; do
  for name in ${NAMES:-poll nopoll spin50}; do
    E="--endpoint http://127.0.0.1:${PORT[$name]} --access-key akey --secret-key sk12345678 --bucket bench --prefix s/ -n 500 --size 4k"
    pid=${PID[$name]}
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(chrt -f 10 $BENCH get $E -c $c -d $D --pin-cores 1 --json --seed $r)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    echo "$out" | python3 -c "import json,sys; r=json.load(sys.stdin)['reports'][0]; print('r$r c=$c $name p50=%.1f p99=%.1f req/s=%.0f cpu_s=%.2f' % (r['p50_us'], r['p99_us'], r['req_per_s'], ($t1-$t0)/$hz))"
  done
 done
done
