#!/usr/bin/env bash
# Scale-out end to end: two `ilre serve` replicas (stories260K, one --data-dir each) behind nginx running
# the shipped deploy/nginx/ilre.conf (only its ports substituted). Checks that every request about one
# document reaches the same replica, that both replicas get documents, that requests without a document
# spread, that chat completions naming a document (X-Ilre-Document) reach its replica, and what happens
# when a replica is killed and restarted on its data dir.
# Usage: scaleout_test.sh <path to ilre> <source dir>
# Needs nginx (/usr/sbin/nginx, else $NGINX or nginx on PATH) and curl; exits 77 (skipped) without them.
# Takes under 10 s on an idle machine; a watchdog ends it within a minute whatever hangs.
set -u
ilre="$1"
src="$2"
model="$src/tests/data/models/stories260K-f32.gguf"
conf_in="$src/deploy/nginx/ilre.conf"
nginx="${NGINX:-/usr/sbin/nginx}"
[ -x "$nginx" ] || nginx=$(command -v nginx || true)
if [ -z "$nginx" ] || ! command -v curl > /dev/null; then
  echo "skip: needs nginx and curl"
  exit 77
fi
for f in "$ilre" "$model" "$conf_in"; do
  [ -e "$f" ] || { echo "FAIL: missing $f"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ilre-scaleout.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
  rm -rf "$work"
}
trap 'cleanup 2> /dev/null' EXIT  # quiet: bash would report the daemon killed with -9 below as "Killed"
trap 'exit 130' INT
trap 'echo "FAIL: the test ran over 45 s"; show_logs; exit 1' TERM
# Watchdog: whatever hangs, the test ends within ~55 s (45 s, plus a running curl's 10 s at most). `read -t`
# is a shell builtin on a FIFO nobody writes, so killing the subshell leaves no sleeping child behind.
mkfifo "$work/watchdog"
( read -r -t 45 <> "$work/watchdog"; kill -TERM $$ ) 2> /dev/null &
pids+=("$!")

started=$SECONDS
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }
show_logs() {
  local f
  for f in "$work/a.log" "$work/b.log" "$work/nginx/error.log" "$work/nginx/access.log"; do
    [ -s "$f" ] && { echo "--- $f (last 15 lines)"; tail -n 15 "$f"; }
  done
}
die() {  # a failure after which nothing else can be checked
  echo "FAIL $*"
  show_logs
  exit 1
}

# One curl: prints the body, then a last line with the status. Bounded in time, never retried.
req() { curl -sS --max-time 10 -w '\n%{http_code}' "$@" 2>&1; }
status_of() { tail -n 1 <<< "$1"; }

free_port() {  # a port nobody listens on now (python3, else probing with bash's /dev/tcp)
  if command -v python3 > /dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    local p
    for _ in $(seq 1 50); do
      p=$((20000 + RANDOM % 40000))
      (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
    done
  fi
}

# A replica: --port 0 lets the kernel pick a free port (no race), which the daemon prints in its log.
start_daemon() {  # start_daemon <name> <port> -> sets daemon_pid, daemon_port
  local name="$1" port="$2" log="$work/$1.log"
  "$ilre" serve --model "$model" --host 127.0.0.1 --port "$port" --data-dir "$work/$name-data" --parallel 2 >> "$log" 2>&1 &
  daemon_pid=$!
  pids+=("$daemon_pid")
  daemon_port=""
  for _ in $(seq 1 100); do  # at most 10 s
    daemon_port=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" | tail -n 1 | sed 's/.*://')
    [ -n "$daemon_port" ] && [ "$port" = 0 -o "$daemon_port" = "$port" ] && return 0
    kill -0 "$daemon_pid" 2> /dev/null || die "daemon $name exited at start"
    sleep 0.1
  done
  die "daemon $name did not print its port within 10 s"
}
start_daemon a 0
pid_a=$daemon_pid port_a=$daemon_port
start_daemon b 0
pid_b=$daemon_pid port_b=$daemon_port

# nginx with the shipped file: only the upstream ports and the listen port change. Temp files, pid and
# logs go to the work dir so nginx runs unprivileged (as the current user).
mkdir -p "$work/nginx/logs"
user_line=""
[ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"  # as root, workers would otherwise run as nobody
start_nginx() {  # start_nginx <port> -> sets pid_n
  sed -e "s/127\.0\.0\.1:8081/127.0.0.1:$port_a/" -e "s/127\.0\.0\.1:8082/127.0.0.1:$port_b/" \
      -e "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$1;/" "$conf_in" > "$work/nginx/ilre.conf"
  grep -q "server 127.0.0.1:$port_a " "$work/nginx/ilre.conf" && grep -q "server 127.0.0.1:$port_b " "$work/nginx/ilre.conf" &&
    grep -q "listen 127.0.0.1:$1;" "$work/nginx/ilre.conf" ||
    die "deploy/nginx/ilre.conf no longer has 'server 127.0.0.1:8081 ', 'server 127.0.0.1:8082 ' and 'listen 127.0.0.1:8080;'"
  : > "$work/nginx/error.log"
  cat > "$work/nginx/nginx.conf" <<EOF
$user_line
worker_processes 1;
events { worker_connections 256; }
http {
    client_body_temp_path $work/nginx/client_body_temp;
    proxy_temp_path $work/nginx/proxy_temp;
    fastcgi_temp_path $work/nginx/fastcgi_temp;
    uwsgi_temp_path $work/nginx/uwsgi_temp;
    scgi_temp_path $work/nginx/scgi_temp;
    log_format ilre_test '\$request_method \$uri \$status doc=\$document_id key=\$ilre_route_key up=\$upstream_addr';
    access_log $work/nginx/access.log ilre_test;
    include $work/nginx/ilre.conf;
}
EOF
  "$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
    -g "daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;" &
  pid_n=$!
  pids+=("$pid_n")
}

# nginx's port is picked free, then bound by nginx: if another process took it meanwhile, nginx exits
# ("Address already in use") and gets another port. Then all three must be healthy, within 20 s.
healthy=0
deadline=$((SECONDS + 20))
for attempt in 1 2 3; do
  port_n=$(free_port)
  base="http://127.0.0.1:$port_n"
  start_nginx "$port_n"
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid_n" 2> /dev/null; then
      grep -q 'in use' "$work/nginx/error.log" 2> /dev/null && [ "$attempt" -lt 3 ] && continue 2
      die "nginx exited at start"
    fi
    kill -0 "$pid_a" 2> /dev/null && kill -0 "$pid_b" 2> /dev/null || die "a daemon exited"
    if curl -sf --max-time 1 "http://127.0.0.1:$port_a/health" > /dev/null && curl -sf --max-time 1 "http://127.0.0.1:$port_b/health" > /dev/null &&
      curl -sf --max-time 1 "$base/health" > /dev/null; then
      healthy=1
      break 2
    fi
    sleep 0.1
  done
  break
done
[ "$healthy" = 1 ] || die "the daemons and nginx were not healthy within 20 s"
ok "two daemons (ports $port_a, $port_b) and nginx (port $port_n) are healthy"

for i in $(seq 1 30); do printf 'Lily went to the park with her mom. The sun was warm. Tom had a red ball. '; done > "$work/text.txt"

# One document through nginx: create (id in body and header), append plain, append chunked, ask, get,
# chat naming it. Every step must succeed.
ids=()
add_document() {
  local id="$1" r
  r=$(req -X POST "$base/v1/documents" -H 'Content-Type: application/json' -H "X-Ilre-Document: $id" -d "{\"id\": \"$id\"}")
  [ "$(status_of "$r")" = 201 ] || { bad "create $id: $(tr '\n' ' ' <<< "$r")"; return; }
  r=$(req -X POST "$base/v1/documents/$id/append" --data-binary @"$work/text.txt")
  [ "$(status_of "$r")" = 200 ] && grep -q '"appended_tokens":[1-9]' <<< "$r" || { bad "append $id: $(tr '\n' ' ' <<< "$r")"; return; }
  r=$(req -X POST "$base/v1/documents/$id/append" -H 'Transfer-Encoding: chunked' --data-binary @"$work/text.txt")
  [ "$(status_of "$r")" = 200 ] && grep -q '"appended_bytes":[1-9]' <<< "$r" || { bad "chunked append $id: $(tr '\n' ' ' <<< "$r")"; return; }
  r=$(req -X POST "$base/v1/documents/$id/ask" -H 'Content-Type: application/json' -d '{"question": "Who had a red ball?", "max_tokens": 4}')
  [ "$(status_of "$r")" = 200 ] && grep -q '"answer"' <<< "$r" || { bad "ask $id: $(tr '\n' ' ' <<< "$r")"; return; }
  r=$(req "$base/v1/documents/$id")
  [ "$(status_of "$r")" = 200 ] && grep -q '"tokens":[1-9]' <<< "$r" || { bad "get $id: $(tr '\n' ' ' <<< "$r")"; return; }
  r=$(req -X POST "$base/v1/chat/completions" -H 'Content-Type: application/json' -H "X-Ilre-Document: $id" \
    -d "{\"messages\": [{\"role\": \"user\", \"content\": \"Who had a red ball?\"}], \"max_tokens\": 4, \"ilre\": {\"document\": \"$id\"}}")
  [ "$(status_of "$r")" = 200 ] && grep -q '"ilre":{' <<< "$r" && grep -q "\"document\":\"$id\"" <<< "$r" ||
    { bad "chat naming $id: $(tr '\n' ' ' <<< "$r" | head -c 400)"; return; }
  ids+=("$id")
}
held_by() {  # held_by <port>: the document ids a daemon lists, one a line
  curl -sS --max-time 10 "http://127.0.0.1:$1/v1/documents" | grep -o '"id":"[^"]*"' | sed 's/"id":"\(.*\)"/\1/' | sort
}
for i in $(seq 1 8); do add_document "doc-$i"; done
# Where ids land depends on the replicas' addresses (random ports); with 8 ids all of them land on one
# replica 1 time in 128. Then add documents until both have some (at most 24 more: 1 in 2^31 fails).
for i in $(seq 9 32); do
  [ -n "$(held_by "$port_a")" ] && [ -n "$(held_by "$port_b")" ] && break
  add_document "doc-$i"
done
[ "${#ids[@]}" -gt 0 ] || die "no document could be created, appended, asked and read through nginx"
[ "$failures" = 0 ] && ok "${#ids[@]} documents created, appended (plain and chunked), asked, read and chatted about through nginx"

held_a=$(held_by "$port_a")
held_b=$(held_by "$port_b")
n_a=$(grep -c . <<< "$held_a")
n_b=$(grep -c . <<< "$held_b")
if [ -n "$held_a" ] && [ -n "$held_b" ]; then ok "both daemons hold documents (a: $n_a, b: $n_b)"; else
  bad "one daemon holds no documents: a: [$(echo $held_a)], b: [$(echo $held_b)]"; fi
both=$(comm -12 <(echo "$held_a") <(echo "$held_b"))
[ -z "$both" ] && ok "no document is on both daemons" || bad "documents on both daemons: $(echo $both)"
all=$(printf '%s\n' "${ids[@]}" | sort)
[ "$(sort <<< "$held_a"$'\n'"$held_b" | grep .)" = "$all" ] && ok "every document is on one daemon" ||
  bad "the daemons hold [$(echo $held_a $held_b)], expected [$(echo $all)]"

# From the logs: every request naming a document went to the daemon that holds it, 6 each (create,
# append, chunked append, ask, get, and the chat completion over it, which the daemon logs with doc= too),
# and each daemon answered one chat completion per document it holds.
routing_ok=1
for id in "${ids[@]}"; do
  in_a=$(grep -c " doc=$id\$" "$work/a.log")
  in_b=$(grep -c " doc=$id\$" "$work/b.log")
  if grep -qx -- "$id" <<< "$held_a"; then mine=$in_a other=$in_b; else mine=$in_b other=$in_a; fi
  if [ "$mine" != 6 ] || [ "$other" != 0 ]; then
    bad "requests for $id: $mine on its daemon, $other on the other (expected 6 and 0)"
    routing_ok=0
  fi
done
[ "$routing_ok" = 1 ] && ok "all requests for each document reached the same daemon (daemon logs)"
chats_a=$(grep -c 'POST /v1/chat/completions 200 ' "$work/a.log")
chats_b=$(grep -c 'POST /v1/chat/completions 200 ' "$work/b.log")
[ "$chats_a" = "$n_a" ] && [ "$chats_b" = "$n_b" ] && ok "chat completions with X-Ilre-Document reached the document's daemon" ||
  bad "chat completions answered: a $chats_a, b $chats_b; expected a $n_a, b $n_b"
grep -q 'chat/completions [^2]' "$work/a.log" "$work/b.log" && bad "a chat completion failed: $(grep -h 'chat/completions [^2]' "$work/a.log" "$work/b.log" | head -3)"

# Requests without a document spread over the replicas ($request_id fallback): 20 GET /v1/models all
# on one replica happens 1 time in 2^19.
for _ in $(seq 1 20); do
  r=$(req "$base/v1/models")
  [ "$(status_of "$r")" = 200 ] || { bad "GET /v1/models through nginx: $(tr '\n' ' ' <<< "$r")"; break; }
done
models_a=$(grep -c 'GET /v1/models 200' "$work/a.log")
models_b=$(grep -c 'GET /v1/models 200' "$work/b.log")
[ "$models_a" -gt 0 ] && [ "$models_b" -gt 0 ] && [ $((models_a + models_b)) = 20 ] &&
  ok "requests without a document spread (a: $models_a, b: $models_b of 20)" ||
  bad "GET /v1/models spread: a $models_a, b $models_b (expected both > 0, 20 in all)"
r=$(req -X POST "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Lily went to the park. Tom had a red ball. Who had a ball?"}], "max_tokens": 4}')
[ "$(status_of "$r")" = 200 ] && grep -q '"choices"' <<< "$r" && ok "a chat completion without a document is answered" ||
  bad "chat without a document: $(tr '\n' ' ' <<< "$r" | head -c 400)"

# Streaming through nginx. An upload the client is still sending is already being ingested on the
# replica (proxy_request_buffering off: nginx does not spool it first; with it on, this check fails).
# A streamed answer passes as SSE events (stories260K answers too fast to tell whether they were held).
sid="${ids[0]}"
{ cat "$work/text.txt"; sleep 2; cat "$work/text.txt"; } |
  curl -sS --max-time 15 -X POST -T - -H 'Transfer-Encoding: chunked' -o "$work/slow.out" -w '%{http_code}' \
    "$base/v1/documents/$sid/append" > "$work/slow.status" 2>&1 &
slow=$!
pids+=("$slow")
seen=""
deadline=$((SECONDS + 2))
while [ "$SECONDS" -le "$deadline" ]; do
  seen=$(curl -sS --max-time 2 "$base/v1/documents/$sid" | grep -o '"state":"[a-z]*"')
  [ "$seen" = '"state":"ingesting"' ] && break
  sleep 0.1
done
wait "$slow"
[ "$seen" = '"state":"ingesting"' ] && ok "an append still uploading through nginx is already ingesting on its replica" ||
  bad "while an append was uploading through nginx its document showed $seen (expected \"state\":\"ingesting\")"
[ "$(cat "$work/slow.status")" = 200 ] && grep -q '"appended_bytes":[1-9]' "$work/slow.out" && ok "the slow chunked append through nginx finished" ||
  bad "slow chunked append: $(cat "$work/slow.status") $(cat "$work/slow.out")"
r=$(req -N -X POST "$base/v1/documents/$sid/ask" -H 'Content-Type: application/json' -d '{"question": "Who had a red ball?", "max_tokens": 4, "stream": true}')
[ "$(status_of "$r")" = 200 ] && grep -q '^data: {"delta"\|^data: {.*document.answer.chunk' <<< "$r" && grep -q '^data: \[DONE\]' <<< "$r" &&
  ok "a streamed ask through nginx arrives as SSE events" || bad "streamed ask: $(tr '\n' ' ' <<< "$r" | head -c 400)"

# nginx refuses a create it cannot route (no X-Ilre-Document): the daemon would pick an id at random.
r=$(req -X POST "$base/v1/documents" -H 'Content-Type: application/json' -d '{"id": "unrouted"}')
[ "$(status_of "$r")" = 400 ] && grep -q 'missing_document_header' <<< "$r" && ok "a create without X-Ilre-Document is refused by nginx" ||
  bad "create without X-Ilre-Document: $(tr '\n' ' ' <<< "$r")"

# A replica dies (SIGKILL): its documents re-hash to the other replica, which lacks their stores (404);
# the survivor's documents still answer. Restarted on its data dir and port, it has every acknowledged
# append, and nginx routes its documents back to it at once: the two failed attempts below stay under
# the shipped max_fails=3, so nginx has not marked it down.
victim=$(head -n 1 <<< "$held_b")
survivor=$(head -n 1 <<< "$held_a")
[ -n "$victim" ] && [ -n "$survivor" ] || die "the failover checks need documents on both daemons"
tokens_before=$(curl -sS --max-time 10 "http://127.0.0.1:$port_b/v1/documents/$victim" | grep -o '"tokens":[0-9]*')
{ kill -9 "$pid_b"; wait "$pid_b"; } 2> /dev/null
r=$(req "$base/v1/documents/$victim")
[ "$(status_of "$r")" = 404 ] && ok "with daemon b dead, its document $victim answers 404 (re-hashed to daemon a)" ||
  bad "GET $victim with its daemon dead: $(tr '\n' ' ' <<< "$r") (expected 404)"
r=$(req -X POST "$base/v1/documents/$victim/append" --data-binary @"$work/text.txt")
[ "$(status_of "$r")" = 404 ] && ok "with daemon b dead, an append to $victim answers 404 (not applied anywhere)" ||
  bad "append to $victim with its daemon dead: $(tr '\n' ' ' <<< "$r") (expected 404)"
r=$(req "$base/v1/documents/$survivor")
[ "$(status_of "$r")" = 200 ] && ok "with daemon b dead, daemon a's document $survivor still answers" ||
  bad "GET $survivor with the other daemon dead: $(tr '\n' ' ' <<< "$r")"
start_daemon b "$port_b"
pid_b=$daemon_pid
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do curl -sf --max-time 1 "http://127.0.0.1:$port_b/health" > /dev/null && break; sleep 0.1; done
[ "$(held_by "$port_b")" = "$held_b" ] && ok "restarted daemon b reloaded its $n_b documents" ||
  bad "restarted daemon b holds [$(echo $(held_by "$port_b"))], expected [$(echo $held_b)]"
r=$(req "$base/v1/documents/$victim")
[ "$(status_of "$r")" = 200 ] && grep -q "$tokens_before[,}]" <<< "$r" &&
  ok "after the restart, $victim answers through nginx with its acknowledged tokens ($tokens_before)" ||
  bad "GET $victim after the restart: $(tr '\n' ' ' <<< "$r") (expected 200 with $tokens_before)"
r=$(req -X POST "$base/v1/documents/$victim/ask" -H 'Content-Type: application/json' -d '{"question": "Who had a red ball?", "max_tokens": 4}')
[ "$(status_of "$r")" = 200 ] && ok "after the restart, $victim can be asked" || bad "ask $victim after the restart: $(tr '\n' ' ' <<< "$r")"

echo "took $((SECONDS - started)) s"
if [ "$failures" -ne 0 ]; then
  show_logs
  echo "$failures check(s) failed"
  exit 1
fi
echo "all scale-out checks passed"
