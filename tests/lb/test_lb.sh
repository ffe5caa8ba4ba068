#!/usr/bin/env bash
# test_lb.sh: the load-balanced setup of docker/compose.yaml, run on 127.0.0.1 without Docker:
# nginx (Debian) with docker/nginx.conf (only its listen port and the two upstream addresses
# rewritten: checked by diff) in front of two `sdserve serve` replicas (tiny model, 1 worker,
# queue 1, so queue-full 503s happen). Six bounded client loops POST /generate through nginx
# (phase A1, then A2); before A2 two long jobs, sent straight to replica 1, fill it, and a
# few answers into A2 it is sent SIGTERM: the long jobs keep it draining until the clients are
# done; after it has exited, a last burst (phase C) goes through nginx, which must move those
# requests off the dead replica. Asserts: no 502/504 or transport error; every answer 200 (a
# PNG) or 503 with Retry-After; the drained replica exits 0; SSE streams through nginx; a body
# over the cap gets nginx's 413 in the service's JSON error shape; each replica's /metrics
# reconciles with what the clients saw (sums of 200s and of 503s, accepted = completed +
# running + queued) and, replica by replica, with what nginx's access log says it answered. Usage: test_lb.sh SDSERVE NGINX_CONF TEST_DATA
set -euo pipefail
exe=${1:?usage: test_lb.sh SDSERVE NGINX_CONF TEST_DATA}
exe=$(realpath "$exe")
conf=${2:?usage}
data=${3:?usage}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "SKIP: nginx not installed (Debian package nginx)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers (user nobody) use temp paths under this prefix
pids=()
cpids=()
ngx_pids=() # nginx masters: stopped with their workers, which a killed master would orphan
stop_nginx() { # pid
  local kids _
  kids=$(pgrep -P "$1" || true)
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 30); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$1" $kids 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${cpids[@]}"; do kill "$p" 2>/dev/null || true; done # client loops
  for p in "${ngx_pids[@]}"; do stop_nginx "$p"; done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in r1.log r2.log nginx.err; do
    echo "---- $f (tail) ----" >&2
    tail -n 15 "$tmp/$f" >&2 || true
  done
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---- two replicas ----------------------------------------------------------------------------
# start_replica N: starts replica N on a free port (a new one if another process took it
# between our probe and its bind), waits for /readyz; sets rN (pid) and pN (port).
start_replica() {
  local n=$1 try port pid
  for try in 1 2 3; do
    port=$(free_port)
    "$exe" serve --model "$data/models/tiny-sd" --host 127.0.0.1 --port "$port" --workers 1 \
      --threads 1 --queue 1 --max-steps 1000 --retry-after-s 1 >"$tmp/r$n.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        printf -v "r$n" %s "$pid"
        printf -v "p$n" %s "$port"
        return 0
      fi
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "replica $n on port $port did not become ready (try $try): $(tail -n 3 "$tmp/r$n.log")"
  done
  fail "replica $n never became ready"
}
start_replica 1
start_replica 2
# ---- nginx with the shipped config, only addresses rewritten -----------------------------------
ngx=
for try in 1 2 3; do
  pn=$(free_port)
  sed -e "s/^\(\s*\)listen 8080;/\1listen 127.0.0.1:$pn;/" \
    -e "s/^\(\s*\)server sdserve-1:7860;/\1server 127.0.0.1:$p1;/" \
    -e "s/^\(\s*\)server sdserve-2:7860;/\1server 127.0.0.1:$p2;/" "$conf" >"$tmp/nginx.conf"
  changed=$(diff "$conf" "$tmp/nginx.conf" | grep -c '^>' || true)
  [ "$changed" = 3 ] ||
    fail "rewriting nginx.conf changed $changed lines, expected 3 (listen, 2 upstreams)"
  "$nginx_bin" -p "$tmp/" -e stderr -c "$tmp/nginx.conf" -g 'daemon off;' \
    >"$tmp/nginx.access" 2>"$tmp/nginx.err" &
  pid=$!
  ngx_pids+=("$pid")
  lb=http://127.0.0.1:$pn
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    if curl -sf "$lb/nginx-healthz" >/dev/null 2>&1; then ngx=$pid; break; fi
    sleep 0.1
  done
  [ -n "$ngx" ] && break
  stop_nginx "$pid"
  echo "nginx on port $pn did not start (try $try): $(tail -n 3 "$tmp/nginx.err")"
done
[ -n "$ngx" ] || fail "nginx did not start"
curl -sf "$lb/readyz" >/dev/null || fail "GET /readyz through nginx failed"
# Into a variable first: with pipefail, `curl | grep -q` fails whenever grep has matched and
# exited while curl is still writing the page.
page=$(curl -sf "$lb/") && grep -qi '<html' <<<"$page" ||
  fail "GET / (the web page) through nginx failed"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$lb/metrics")" = 404 ] ||
  fail "/metrics must not be served through the balancer"

# ---- clients -------------------------------------------------------------------------------
# One line per request: HTTP code (000 = transport error), Retry-After value or -, png|notpng.
client() { # id count outfile
  local id=$1 n=$2 out=$3 i code ra kind
  for i in $(seq 1 "$n"); do
    rm -f "$tmp/body.$id" "$tmp/hdr.$id"
    code=$(curl -s -o "$tmp/body.$id" -D "$tmp/hdr.$id" -w '%{http_code}' --max-time 120 \
      -H 'Content-Type: application/json' \
      -d "{\"prompt\": \"a red circle\", \"seed\": $((id * 1000 + i)), \"steps\": 4}" \
      "$lb/generate") || true
    ra=$({ tr -d '\r' <"$tmp/hdr.$id"; } 2>/dev/null |
      awk 'tolower($1) == "retry-after:" {print $2}') || true
    kind=notpng
    [ "$(head -c 4 "$tmp/body.$id" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e47 ] &&
      kind=png
    echo "$code ${ra:--} $kind" >>"$out"
    if [ "$code" = 503 ]; then sleep 0.1; fi
  done
}
answered() { cat "$tmp"/phase*.out 2>/dev/null | wc -l; }

# Phase A1: both replicas serve the clients.
nclients=6
run_clients() { # phase count
  cpids=()
  for c in $(seq 1 $nclients); do
    client "$c" "$2" "$tmp/phase$1.$c.out" &
    cpids+=($!)
  done
}
run_clients A1 4
for p in "${cpids[@]}"; do wait "$p"; done
total_a=$((nclients * (4 + 8)))

# Two long jobs straight to replica 1, while no client is sending: the first runs, the second
# fills its one queue slot, so no request from nginx waits there (they get 503 + Retry-After),
# and after SIGTERM it drains and cannot exit before both are done. A job counts as accepted
# when replica 1's accepted_total goes up (nothing else is reaching it meanwhile).
metrics() { curl -sf --max-time 10 "http://127.0.0.1:$1/metrics"; }
val() { # file metric-line-prefix -> value (0 when absent)
  awk -v k="$2" 'index($0, k " ") == 1 {v = $NF} END {print v + 0}' "$1"
}
long_503=0
send_long() { # n: starts curl for long job n in the background until it is accepted; sets $last
  local n=$1 _ a0
  for _ in $(seq 1 200); do
    metrics "$p1" >"$tmp/m.before" || fail "cannot read replica 1's /metrics"
    a0=$(val "$tmp/m.before" sdserve_jobs_accepted_total)
    rm -f "$tmp/long$n.code"
    curl -s -o "$tmp/long$n.png" -w '%{http_code}' --max-time 170 \
      -H 'Content-Type: application/json' \
      -d "{\"prompt\": \"a red circle\", \"seed\": $n, \"steps\": 600, \"width\": 96,
           \"height\": 96}" "http://127.0.0.1:$p1/generate" >"$tmp/long$n.code" &
    last=$!
    pids+=("$last")
    while kill -0 "$last" 2>/dev/null; do
      metrics "$p1" >"$tmp/m.now" || true
      [ "$(val "$tmp/m.now" sdserve_jobs_accepted_total)" -gt "$a0" ] && return 0
      sleep 0.02
    done
    wait "$last" || true
    [ "$(cat "$tmp/long$n.code")" = 503 ] || fail "long job $n: $(cat "$tmp/long$n.code")"
    long_503=$((long_503 + 1))
    sleep 0.05
  done
  fail "replica 1 never accepted long job $n"
}
send_long 1
long1=$last
send_long 2
long2=$last
# Phase A2: the clients go on; a few answers in, replica 1 gets SIGTERM.
run_clients A2 8
n0=$(answered)
for _ in $(seq 1 600); do
  [ "$(answered)" -ge $((n0 + nclients)) ] && break
  sleep 0.05
done
kill -TERM "$r1"
echo "SIGTERM to replica 1 after $(answered) of $total_a answers"

for p in "${cpids[@]}"; do wait "$p"; done
metrics "$p1" >"$tmp/m1" || fail "replica 1 finished draining before the clients did (timing)"
# replica 1 now holds only long jobs; the others have been answered
r1_pending=$(( $(val "$tmp/m1" sdserve_jobs_running) + $(val "$tmp/m1" sdserve_queue_depth) ))
long_done=$((2 - r1_pending))
[ "$r1_pending" -ge 1 ] || fail "the long jobs ended before the clients did (timing)"

for n in 1 2; do
  wait "$(eval echo "\$long$n")" || fail "long job $n: curl failed"
  [ "$(cat "$tmp/long$n.code")" = 200 ] || fail "long job $n answered $(cat "$tmp/long$n.code")"
done
r1_status=0
wait "$r1" || r1_status=$?
[ "$r1_status" = 0 ] || fail "replica 1 exited with status $r1_status after SIGTERM"
grep -q 'drained' "$tmp/r1.log" || fail "replica 1 did not log its drain"

# Replica 1 is gone: nginx must move these requests to replica 2 (connection refused = error).
cpids=()
for c in 1 2; do
  client "$((c + 10))" 5 "$tmp/phaseC.$c.out" &
  cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done

# SSE through nginx arrives as it happens (proxy_buffering off; sdserve also sends
# X-Accel-Buffering: no): a progress event is there while the generation is still running.
: >"$tmp/lb.sse"
curl -sN -o "$tmp/lb.sse" --max-time 120 -H 'Content-Type: application/json' \
  -d '{"prompt": "a red circle", "seed": 5, "steps": 300, "stream": true}' "$lb/generate" &
sse=$!
pids+=("$sse")
while kill -0 "$sse" 2>/dev/null && ! grep -q '^event: progress' "$tmp/lb.sse"; do sleep 0.02; done
kill -0 "$sse" 2>/dev/null || fail "SSE through nginx: no progress event before the end"
wait "$sse" || fail "SSE through nginx: curl failed"
grep -q '^event: done' "$tmp/lb.sse" || fail "SSE through nginx: no done event"
# A body over the cap: nginx answers 413 with the service's JSON error shape.
head -c $((16 * 1024 * 1024 + 1)) /dev/zero >"$tmp/big.json"
code=$(curl -s -o "$tmp/big.out" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary @"$tmp/big.json" "$lb/generate") || true
[ "$code" = 413 ] && grep -q '"code":"body_too_large"' "$tmp/big.out" ||
  fail "16 MiB + 1 byte through nginx: $code $(head -c 200 "$tmp/big.out")"
metrics "$p2" >"$tmp/m2" || fail "cannot read replica 2's /metrics"

# ---- what the clients saw ----------------------------------------------------------------------
cat "$tmp"/phase*.out >"$tmp/all.out"
n_all=$(wc -l <"$tmp/all.out")
n_200=$(awk '$1 == 200 && $3 == "png"' "$tmp/all.out" | wc -l)
n_503=$(awk '$1 == 503 && $2 != "-"' "$tmp/all.out" | wc -l)
n_bad=$(awk '!(($1 == 200 && $3 == "png") || ($1 == 503 && $2 != "-"))' "$tmp/all.out" | wc -l)
n_5024=$(awk '$1 == 502 || $1 == 504' "$tmp/all.out" | wc -l)
n_c=$(cat "$tmp"/phaseC.*.out | wc -l)
n_c200=$(cat "$tmp"/phaseC.*.out | awk '$1 == 200' | wc -l)
echo "clients: $n_all requests through nginx: $n_200 x 200 (PNG), $n_503 x 503 + Retry-After," \
  "$n_bad other ($n_5024 x 502/504); after replica 1 exited: $n_c200 of $n_c answered 200;" \
  "long jobs: 2 x 200 after $long_503 x 503"
[ "$n_all" = $((total_a + 10)) ] || fail "expected $((total_a + 10)) answers, got $n_all"
[ "$n_5024" = 0 ] || fail "$n_5024 answers were 502 or 504"
[ "$n_bad" = 0 ] || fail "$n_bad answers were neither 200+PNG nor 503+Retry-After:" \
  "$(awk '!(($1 == 200 && $3 == "png") || ($1 == 503 && $2 != "-"))' "$tmp/all.out" |
    sort | uniq -c | tr '\n' ';')"
[ "$n_503" -ge 1 ] || fail "no 503 reached a client: the draining/queue-full path was not exercised"
[ "$n_200" -ge $((total_a / 4)) ] || fail "only $n_200 answers were 200"
! grep -q 'no live upstreams' "$tmp/nginx.err" || fail "nginx ran out of live upstreams"
refused=$(grep -c 'connect() failed' "$tmp/nginx.err" || true)
echo "nginx moved $refused request(s) off the exited replica"
[ "$refused" -ge 1 ] ||
  fail "no request met the exited replica: the failover path was not exercised"

# ---- what the replicas counted ---------------------------------------------------------------
for r in 1 2; do
  f=$tmp/m$r
  declare "g200_$r=$(val "$f" 'sdserve_requests_total{route="/generate",outcome="200"}')"
  declare "g503_$r=$(val "$f" 'sdserve_requests_total{route="/generate",outcome="503"}')"
  other=$(grep '^sdserve_requests_total{route="/generate"' "$f" |
    grep -v -e 'outcome="200"' -e 'outcome="503"' || true)
  [ -z "$other" ] || fail "replica $r answered /generate with other statuses: $other"
  acc=$(val "$f" sdserve_jobs_accepted_total)
  done_=$(val "$f" sdserve_jobs_completed_total)
  run=$(val "$f" sdserve_jobs_running)
  q=$(val "$f" sdserve_queue_depth)
  lost=$(( $(val "$f" sdserve_jobs_cancelled_total) + $(val "$f" sdserve_jobs_expired_total) +
    $(val "$f" sdserve_jobs_failed_total) ))
  g200=$(eval echo "\$g200_$r")
  echo "replica $r /metrics: accepted $acc, completed $done_, running $run, queued $q," \
    "lost $lost, /generate 200: $g200, 503: $(eval echo "\$g503_$r")"
  [ "$lost" = 0 ] || fail "replica $r cancelled, expired or failed $lost jobs"
  [ "$acc" = $((done_ + run + q)) ] ||
    fail "replica $r: accepted $acc != completed + running + queued"
  [ "$done_" = "$g200" ] || fail "replica $r: completed $done_ != /generate 200 answers $g200"
done
# the metric the Kubernetes autoscaler scales on (deploy/hpa.yaml) is one sdserve exports
hpa=$(dirname "$conf")/../deploy/hpa.yaml
hpa_metric=$(awk '/type: Pods/ { p = 1 } p && $1 == "name:" { print $2; exit }' "$hpa")
[ -n "$hpa_metric" ] && grep -q "^$hpa_metric " "$tmp/m2" ||
  fail "the HPA's pods metric '$hpa_metric' is not in sdserve's /metrics"
# replica 1 was read while draining, holding only long jobs ($r1_pending; all answered 200)
[ "$(val "$tmp/m1" sdserve_draining)" = 1 ] || fail "replica 1 was not draining"
[ "$(val "$tmp/m2" sdserve_jobs_running)" = 0 ] || fail "replica 2 still running jobs"
# per replica: what nginx's access log says each one answered (the last replica it tried)
grep '"POST /generate ' "$tmp/nginx.access" |
  sed -nE 's/.* upstream=(.*) upstream_status=(.*) time=.*/\1|\2/p' |
  awk -F'|' '{ n = split($1, a, ", "); m = split($2, b, ", "); print a[n], b[m] }' >"$tmp/by_up"
for r in 1 2; do
  port=$(eval echo "\$p$r")
  ok=$(awk -v u="127.0.0.1:$port" '$1 == u && $2 == 200' "$tmp/by_up" | wc -l)
  busy=$(awk -v u="127.0.0.1:$port" '$1 == u && $2 == 503' "$tmp/by_up" | wc -l)
  direct=0 direct_ok=0 # the long jobs, sent to replica 1 without nginx
  [ "$r" = 1 ] && direct=$long_503 && direct_ok=$long_done
  echo "nginx access log: replica $r answered $ok x 200, $busy x 503"
  [ $((ok + direct_ok)) = "$(eval echo "\$g200_$r")" ] ||
    fail "replica $r counted $(eval echo "\$g200_$r") x 200, nginx saw $ok (+ $direct_ok direct)"
  [ $((busy + direct)) = "$(eval echo "\$g503_$r")" ] ||
    fail "replica $r counted $(eval echo "\$g503_$r") x 503, nginx saw $busy (+ $direct direct)"
done
[ $((g200_1 + r1_pending + g200_2)) = $((n_200 + 3)) ] ||
  fail "200s: replicas counted $g200_1 + $r1_pending (pending long jobs) + $g200_2," \
    "clients saw $n_200 + 3 (long jobs, SSE)"
[ $((g503_1 + g503_2)) = $((n_503 + long_503)) ] ||
  fail "503s: replicas counted $g503_1 + $g503_2, clients saw $n_503 + $long_503 (long jobs)"

kill -QUIT "$ngx" # graceful: its workers finish and exit with it
wait "$ngx" || true
ngx_pids=()
kill -TERM "$r2"
r2_status=0
wait "$r2" || r2_status=$?
[ "$r2_status" = 0 ] || fail "replica 2 exited with status $r2_status"
pids=()
echo "lb test ok"
