#!/usr/bin/env bash
# test_curl.sh: the HTTP service seen through curl, as a user would try it: start
# `sdserve serve` with the tiny model on a free port, check /healthz and /readyz, generate a
# PNG (seed in X-Seed, PNG signature, `parameters` text with the seed), stream SSE events
# (queued, progress 1..N in order, done), get a JSON error for bad JSON, find one log line
# per request (id, route, status, queue wait, generation time), then SIGTERM and expect exit
# status 0; before that, a bad SDSERVE_PORT is refused naming its source and the shipped
# example config matches `sdserve serve --print-example-config`. Usage: test_curl.sh PATH/TO/sdserve TESTS_DATA_DIR
set -euo pipefail
exe=${1:?usage: test_curl.sh SDSERVE DATA_DIR}
data=${2:?usage: test_curl.sh SDSERVE DATA_DIR}
command -v curl >/dev/null || { echo "curl not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "---- server log ----" >&2
  tail -n 40 "$tmp/server.log" >&2 || true
  exit 1
}

# configuration errors name the source and the key; the example config is the table's
out=$(SDSERVE_PORT=70000 "$exe" serve --model "$data/models/tiny-sd" 2>&1) && fail "port 70000 accepted"
case $out in *"SDSERVE_PORT: 70000 is above the maximum 65535"*) ;; *) fail "config error: $out" ;; esac
"$exe" serve --print-example-config | cmp -s - "$data/../../config/sdserve.conf.example" ||
  fail "sdserve serve --print-example-config differs from config/sdserve.conf.example"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$exe" serve --model "$data/models/tiny-sd" --host 127.0.0.1 --port "$port" \
  --workers 1 2>"$tmp/server.log" &
pid=$!
url=http://127.0.0.1:$port
for _ in $(seq 1 300); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || fail "server exited during start-up"
  sleep 0.1
done
curl -sf "$url/readyz" >/dev/null || fail "/readyz never answered 200"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ] || fail "/healthz"

# a PNG with the seed in a header and in its parameters text
code=$(curl -s -o "$tmp/out.png" -D "$tmp/headers" -w '%{http_code}' \
  -H 'Content-Type: application/json' \
  -d '{"prompt": "a red circle", "seed": 31337, "steps": 2}' "$url/generate")
[ "$code" = 200 ] || fail "/generate answered $code: $(head -c 300 "$tmp/out.png")"
grep -qi '^x-seed: 31337' "$tmp/headers" || fail "no X-Seed: 31337 header"
grep -qi '^content-type: image/png' "$tmp/headers" || fail "not image/png"
[ "$(head -c 8 "$tmp/out.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  fail "not a PNG signature"
grep -aq 'Seed: 31337' "$tmp/out.png" || fail "no 'Seed: 31337' in the PNG parameters text"

# SSE: queued, progress 1..3 in order, done
curl -sN -H 'Content-Type: application/json' \
  -d '{"prompt": "a red circle", "seed": 1, "steps": 3, "stream": true}' \
  "$url/generate" >"$tmp/sse" || fail "SSE request failed"
events=$(grep '^event:' "$tmp/sse" | sed 's/^event: *//' | tr '\n' ' ')
[ "$events" = "queued progress progress progress done " ] || fail "SSE events: '$events'"
steps=$(grep -A1 '^event: progress' "$tmp/sse" | grep -o '"step": *[0-9]*' | grep -o '[0-9]*$' |
  tr '\n' ' ')
[ "$steps" = "1 2 3 " ] || fail "SSE progress steps: '$steps'"

# a JSON error for a broken body
code=$(curl -s -o "$tmp/err.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt": ' "$url/generate")
[ "$code" = 400 ] || fail "bad JSON answered $code"
grep -q '"error"' "$tmp/err.json" && grep -q '"code"' "$tmp/err.json" ||
  fail "error body: $(cat "$tmp/err.json")"

# one log line per request: id, route, status, queue wait, generation time
grep -Eq 'req=[0-9]+ route=/generate status=200 queue_wait=[0-9.]+s gen=[0-9.]+s' \
  "$tmp/server.log" || fail "no request log line for the /generate"
grep -Eq 'req=[0-9]+ route=/generate status=400 ' "$tmp/server.log" ||
  fail "no request log line for the 400"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
echo "curl tests ok (port $port)"
