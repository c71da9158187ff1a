#!/usr/bin/env bash
# compose_test.sh: the docker-compose deployment (deploy/compose/) end to end in a real Docker engine:
#   1. the base image debian:12-slim is there (deploy/debian-base-image.sh: kept, pulled, or built
#      with debootstrap + docker import when no registry is reachable);
#   2. deploy/compose/Dockerfile.cpu builds (portable: no build-arg), context = the repository root
#      filtered by .dockerignore;
#   3. docker-compose.yml comes up under a unique project name (-p) and the router's /healthz says ok;
#   4. intrinsic calls through the HTTP API (/v1/completions on token ids) and `alora invoke` equal
#      `alora generate` on the same model and adapter (activation start, tokens, logprobs bit for bit,
#      text; an HTTP output the router decoded under the intrinsic's output constraint must be one of
#      its outputs); with a host build (ALORA_BIN), the host's `alora generate` on the model copied
#      out of the volume gives the same result as the image's;
#   5. `up --scale worker-query-rewrite=2`: two query_rewrite workers registered with the router;
#   6. recovery: alora-base killed (kill -9 inside its container) -> restarted by the restart policy,
#      every worker re-attached to the new base, the stale arenas gone, the same answers; then the
#      base stopped for a while and started again (workers restart meanwhile) -> recovered as well;
#   7. `down -v` leaves no container, volume, network or shm mount of the project.
# Prints the duration of every phase. Too slow for `make test` (minutes; builds an image): ctest
# registers it (tests/*_test.sh) but it skips (exit 77) unless ALORA_TEST_DEPLOY=1; `make test-deploy`
# sets it. Also exit 77 when no docker client, daemon or compose (v2 `docker compose` or v1
# `docker-compose`) is reachable. COMPOSE="docker-compose" (or "docker compose") forces one;
# ALORA_IMAGE (default alora:cpu) names the image built and run; KEEP_IMAGE=0 removes it at the end;
# ALORA_BUILD_NO_CACHE=1 builds without Docker's layer cache (the time of a first build).
set -euo pipefail

if [ "${ALORA_TEST_DEPLOY:-0}" != 1 ]; then
  echo "SKIP: the docker-compose test builds an image and runs a cluster in Docker (minutes):" \
    "run it with 'make test-deploy' or ALORA_TEST_DEPLOY=1 bash tests/deploy/compose_test.sh"
  exit 77
fi
cd "$(dirname "$0")/../.."

command -v docker >/dev/null || { echo "SKIP: no docker client (Debian: apt-get install docker.io docker-compose)"; exit 77; }
if ! timeout 20 docker info >/dev/null 2>&1; then
  echo "SKIP: no docker daemon reachable (start one: nohup dockerd >/tmp/dockerd.log 2>&1 &)"
  exit 77
fi
COMPOSE_CMD=()
if [ -n "${COMPOSE:-}" ]; then
  read -ra COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE_CMD=(docker-compose)
else
  echo "SKIP: neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
  exit 77
fi
"${COMPOSE_CMD[@]}" version >/dev/null 2>&1 || { echo "SKIP: '${COMPOSE_CMD[*]} version' fails"; exit 77; }
for c in curl jq timeout; do
  command -v "$c" >/dev/null || { echo "SKIP: $c not installed"; exit 77; }
done

FILE=deploy/compose/docker-compose.yml
IMAGE=${ALORA_IMAGE:-alora:cpu}
P="alora-ct-$$-$((RANDOM % 1000))"
T=$(mktemp -d "/tmp/alora-compose-XXXXXX")
FAILS=0
UP=0
IDS=()
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # check DESC COND-COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else fail "$d"; fi
}
now() { date +%s.%N; }
PHASES=()
T_PHASE=$(now)
phase_done() { # phase_done NAME: records the time since the previous phase ended
  local t; t=$(now)
  PHASES+=("$(awk -v a="$T_PHASE" -v b="$t" -v n="$1" 'BEGIN { printf "%-34s %7.1f s", n, b - a }')")
  echo "--- $1: $(awk -v a="$T_PHASE" -v b="$t" 'BEGIN { printf "%.1f s", b - a }')"
  T_PHASE=$t
}
dc() { "${COMPOSE_CMD[@]}" -p "$P" -f "$FILE" "$@"; }
cleanup() {
  local rc=$?
  if [ "$UP" = 1 ]; then
    echo "--- cleanup: $P down -v"
    if [ "$FAILS" -gt 0 ] || [ "$rc" -ne 0 ]; then dc logs --no-color --tail=25 2>&1 | tail -150 || true; fi
    dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  fi
  if [ "${KEEP_IMAGE:-1}" = 0 ]; then docker image rm "$IMAGE" >/dev/null 2>&1 || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

source scripts/free_port.sh
export ALORA_HTTP_PORT ALORA_IMAGE=$IMAGE
ALORA_HTTP_PORT=$(free_port)
H="http://127.0.0.1:$ALORA_HTTP_PORT"
echo "compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || "${COMPOSE_CMD[@]}" version | head -1))," \
  "docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), project $P, image $IMAGE, HTTP $H"

# cid SERVICE: the id of the service's (first) running container
cid() { dc ps -q "$1" 2>/dev/null | head -1 || true; }
# in_router CMD...: a command in the router container (the image's binaries, /models read-only)
in_router() { docker exec "$(cid router)" "$@"; }
R=ipc:///run/alora/router.ipc
status_json() { in_router alora status --router "$R" --json 2>/dev/null; }
healthz() { curl -s -m 10 -o /dev/null -w '%{http_code}' "$H/healthz" 2>/dev/null || true; }
# wait_healthy SECONDS: /healthz 200
wait_healthy() {
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do
    [ "$(healthz)" = 200 ] && return 0
    sleep 0.5
  done
  return 1
}
# WANT: intrinsic -> workers expected; workers_ok BASE_ID: every expected worker is registered,
# healthy and attached to base BASE_ID, and no other worker is listed
declare -A WANT=([certainty]=2 [answerability]=2 [query_rewrite]=1 [hallucination_detection]=1)
want_json() {
  local k s="{"
  for k in "${!WANT[@]}"; do s+="\"$k\":${WANT[$k]},"; done
  echo "${s%,}}"
}
workers_ok() {
  local st
  st=$(status_json) || return 1
  jq -e --arg b "$1" --argjson want "$(want_json)" '
    [.processes[] | select(.role == "worker")] as $w
    | ($w | all(.health == "ok" and .base_instance == $b))
      and ($w | group_by(.intrinsic) | map({(.[0].intrinsic): length}) | add) == $want' <<<"$st" >/dev/null
}
base_id() { status_json | jq -r '[.processes[] | select(.role == "base" and .health == "ok")][0].id // empty'; }
# wait_recovered OLD_BASE_ID SECONDS: /healthz 200, a new healthy base, every worker on it
NEW_BASE=
wait_recovered() {
  local end=$((SECONDS + $2))
  NEW_BASE=
  while [ $SECONDS -lt $end ]; do
    if [ "$(healthz)" = 200 ]; then
      NEW_BASE=$(base_id || true)
      if [ -n "$NEW_BASE" ] && [ "$NEW_BASE" != "$1" ] && workers_ok "$NEW_BASE"; then return 0; fi
    fi
    sleep 0.5
  done
  return 1
}

# ---- 1. the base image ---------------------------------------------------------------------------
rc=0
bash deploy/debian-base-image.sh || rc=$?
if [ $rc -eq 77 ]; then echo "SKIP: deploy/debian-base-image.sh skipped"; exit 77; fi
BASE_ID=$(docker image inspect debian:12-slim -f '{{.Id}}' 2>/dev/null || true)
check "base image debian:12-slim present (deploy/debian-base-image.sh exit $rc, ${BASE_ID:7:12})" [ -n "$BASE_ID" ]
[ $rc -eq 0 ] || exit 1
phase_done "base image"

# ---- 2. the image --------------------------------------------------------------------------------
NO_CACHE=()
[ "${ALORA_BUILD_NO_CACHE:-0}" = 1 ] && NO_CACHE=(--no-cache)
if timeout 3600 docker build --force-rm "${NO_CACHE[@]}" -f deploy/compose/Dockerfile.cpu -t "$IMAGE" . >"$T/build.log" 2>&1; then
  SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')
  CTX=$(grep -Eo 'Sending build context to Docker daemon +[0-9.]+[kMG]?B|transferring context: [0-9.]+[kMG]?B' \
    "$T/build.log" | tail -1 | grep -Eo '[0-9.]+[kMG]?B$' || echo "?")
  ok "docker build ${NO_CACHE[*]:+${NO_CACHE[*]} }-f deploy/compose/Dockerfile.cpu -t $IMAGE . (image $SIZE, context $CTX)"
else
  tail -40 "$T/build.log"
  fail "docker build"
  exit 1
fi
phase_done "image build"

# ---- 3. up ---------------------------------------------------------------------------------------
UP=1
if ! timeout 600 "${COMPOSE_CMD[@]}" -p "$P" -f "$FILE" up -d --no-build >"$T/up.log" 2>&1; then
  tail -30 "$T/up.log"
  fail "$P up -d"
  exit 1
fi
mapfile -t IDS < <(docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$P")
ok "$P up -d: ${#IDS[@]} containers"
check "/healthz 200 (router, base and the configured worker replicas up)" wait_healthy 180
BASE0=$(base_id || true)
check "base $BASE0 healthy, $(want_json | tr -d '"') workers attached to it" workers_ok "$BASE0"
if [ "$(jq -r .status <<<"$(curl -s -m 10 "$H/healthz")")" != ok ]; then fail "/healthz status is not ok"; fi
phase_done "up -d to /healthz ok"

# ---- 4. HTTP == alora invoke == alora generate -------------------------------------------------
# The router container has the image's binaries and the models volume; /tmp/m is the model with the
# image's tokenizer next to it, so that `alora generate` prints the text as the HTTP API does.
in_router sh -c 'mkdir -p /tmp/m && ln -sf /models/model/* /usr/share/alora/tokenizer/* /tmp/m/' ||
  fail "model + tokenizer dir in the router container"
HOST_MODEL=
if [ -x "${ALORA_BIN:-}" ]; then
  docker cp "$(dc ps -aq model-prep | head -1)":/models "$T/models" >/dev/null 2>&1 && HOST_MODEL=$T/models ||
    fail "docker cp the models volume out of the model-prep container"
fi
# parity NAME INVOCATION FIRST_TOKEN: one intrinsic on a fresh conversation (its first token is new to
# the base's prefix cache, so the base prefills [0, activation) in one chunk: `generate --chunk` at
# that position is the bitwise single-process equivalent, as in tests/integration/cluster_test.sh).
#  - `alora invoke` (router -> worker, no HTTP) == `alora generate`: tokens, activation, top-5 logprobs.
#  - HTTP /v1/completions on the same token ids (the router appends the invocation): the top-5 logprobs
#    at the decision position (reported before any constraint) == `alora generate`'s, bit for bit;
#    the output == `alora generate`'s (text, every token's logprob), or, where the router decodes an
#    intrinsic under its output contract (`outputs` of the intrinsic, a constraint `alora generate`
#    cannot apply), one of the intrinsic's outputs.
REST=17,29,33,45,61,77,89,97,123,150,170,200,230,260,290,310,330,350,370,401,433
declare -A HTTP_ANSWER FIRST
# http_answer NAME FIRST: the intrinsic on FIRST,REST through /v1/completions, its comparable part
http_answer() {
  curl -s -m 60 "$H/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$1\",\"prompt\":[$2,$REST],\"max_tokens\":4,\"logprobs\":5}" |
    jq -c '{activation_start: .intrinsic.activation_start, lp: .choices[0].logprobs.token_logprobs,
            text: .choices[0].text, n: .usage.completion_tokens,
            top0: ([.choices[0].logprobs.top_logprobs[0][]] | sort)}'
}
parity() {
  local name=$1 inv=$2 p="$3,$REST"
  FIRST[$name]=$3
  local n h i g s want outputs
  n=$(tr ',' '\n' <<<"$p" | wc -l)
  h=$(http_answer "$name" "$3") || { fail "$name: HTTP call"; return; }
  HTTP_ANSWER[$name]=$h
  s=$(jq -r .activation_start <<<"$h")
  [ "$s" = "$n" ] || { fail "$name: HTTP activation_start '$s', want $n (the prompt's length): $h"; return; }
  g=$(in_router alora generate --model /tmp/m --adapter "/models/$name" --tokens "$p,$inv" --max-tokens 4 \
    --top-logprobs 5 --chunk "$s" --json 2>/dev/null) || { fail "$name: alora generate"; return; }
  want=$(jq -c '{activation_start, tokens, lp: [.top_logprobs[][0].logprob], text,
                 top: [.top_logprobs[] | [.[].logprob]], top0: ([.top_logprobs[0][].logprob] | sort)}' <<<"$g") ||
    { fail "$name: alora generate printed no JSON: $g"; return; }
  # the completions format keys top_logprobs by token text: equal texts collapse into one entry
  if jq -e --argjson w "$want" '.top0 as $h | ($h | length) > 0 and ($h | all(. as $v | $w.top0 | index($v) != null))
        and ($h | max) == ($w.top0 | max)' <<<"$h" >/dev/null; then
    ok "$name: HTTP == alora generate at the decision position (activation $s, top-5 logprobs bitwise)"
  else
    fail "$name: HTTP top-5 logprobs at the decision position != alora generate's"
    echo "  http:     $(jq -c .top0 <<<"$h")"; echo "  generate: $(jq -c .top0 <<<"$want")"
  fi
  outputs=$(curl -s -m 10 "$H/v1/intrinsics" | jq -c --arg n "$name" '[.data[] | select(.name == $n) | .outputs // []][0] // []')
  if [ "$(jq -c '{lp, text}' <<<"$h")" = "$(jq -c '{lp, text}' <<<"$want")" ] &&
     [ "$(jq -r .n <<<"$h")" = "$(jq '.tokens | length' <<<"$want")" ]; then
    ok "$name: HTTP output == alora generate (text $(jq -c .text <<<"$want"), logprobs bitwise)"
  elif jq -e --argjson o "$outputs" '($o | length) > 0 and (.text as $t | $o | index($t) != null)' <<<"$h" >/dev/null; then
    ok "$name: HTTP output $(jq -c .text <<<"$h") is one of the intrinsic's outputs (decoded under its output" \
       "constraint; unconstrained alora generate: $(jq -c .text <<<"$want"))"
  else
    fail "$name: HTTP output != alora generate, and not one of the intrinsic's outputs $outputs"
    echo "  http:     $h"; echo "  generate: $want"
  fi
  if ! i=$(in_router alora invoke --router "$R" --intrinsic "$name" --tokens "$p,$inv" --max-tokens 4 \
         --top-logprobs 5 --json); then
    fail "$name: alora invoke"
  elif [ "$(jq -c '{activation_start, tokens, top: [.top_logprobs[] | [.[].logprob]]}' <<<"$i")" = \
       "$(jq -c '{activation_start, tokens, top}' <<<"$want")" ]; then
    ok "$name: alora invoke == alora generate (tokens $(jq -c .tokens <<<"$want"), top-5 logprobs bitwise)"
  else
    fail "$name: alora invoke != alora generate"; echo "  invoke:   $(jq -c 'del(.timings)' <<<"$i")"; echo "  generate: $want"
  fi
  if [ -n "$HOST_MODEL" ]; then
    local hg
    hg=$("$ALORA_BIN" generate --model "$HOST_MODEL/model" --adapter "$HOST_MODEL/$name" --tokens "$p,$inv" \
      --max-tokens 4 --top-logprobs 5 --chunk "$s" --json 2>/dev/null |
      jq -c '{activation_start, tokens, top: [.top_logprobs[] | [.[].logprob]]}') || hg="(host alora generate failed)"
    if [ "$hg" = "$(jq -c '{activation_start, tokens, top}' <<<"$want")" ]; then
      ok "$name: the host build ($ALORA_BIN) computes the same as the image"
    else
      fail "$name: host build != image"; echo "  host:  $hg"; echo "  image: $want"
    fi
  fi
}
F0=$((100 + RANDOM % 300))
parity certainty 500,501,502 "$F0"
parity answerability 505,506 "$((F0 + 1))"
phase_done "HTTP / invoke / generate parity"

# ---- 5. scale a pool -----------------------------------------------------------------------------
if timeout 300 "${COMPOSE_CMD[@]}" -p "$P" -f "$FILE" up -d --no-build --scale worker-query-rewrite=2 >"$T/scale.log" 2>&1; then
  WANT[query_rewrite]=2
  end=$((SECONDS + 60))
  until workers_ok "$BASE0" || [ $SECONDS -ge $end ]; do sleep 0.5; done
  check "--scale worker-query-rewrite=2: 2 query_rewrite workers registered (alora status)" workers_ok "$BASE0"
  check "/v1/intrinsics: query_rewrite has 2 workers" \
    [ "$(curl -s -m 10 "$H/v1/intrinsics" | jq '.data[] | select(.name == "query_rewrite") | .workers')" = 2 ]
  ids=$(status_json | jq -c '[.processes[] | select(.intrinsic == "query_rewrite") | .id] | sort')
  check "query_rewrite workers have distinct replica slots ($ids)" [ "$ids" = '["query_rewrite-0","query_rewrite-1"]' ]
else
  tail -20 "$T/scale.log"; fail "up -d --scale worker-query-rewrite=2"
fi
mapfile -t IDS < <(docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$P")
phase_done "scale a worker pool to 2"

# ---- 6. recovery ---------------------------------------------------------------------------------
# same_answer NAME: the HTTP call of the parity phase gives the same answer again (the restarted base
# has an empty prefix cache: it prefills the conversation in one chunk as the first time, same bits)
same_answer() {
  local h
  h=$(http_answer "$1" "${FIRST[$1]}")
  [ "$h" = "${HTTP_ANSWER[$1]}" ] || { echo "  now: $h"; echo "  before: ${HTTP_ANSWER[$1]}"; return 1; }
}
arenas_fresh() { # the base's /dev/shm holds exactly the 3 arenas of the running alora-base
  local b pid names
  b=$(cid base)
  pid=$(docker exec "$b" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = alora-base ] && echo ${p#/proc/}; done' | head -1)
  names=$(docker exec "$b" sh -c 'ls /dev/shm' | tr '\n' ' ')
  [ -n "$pid" ] && [ "$(wc -w <<<"$names")" = 3 ] && [ "$(tr ' ' '\n' <<<"$names" | grep -c -- "^alora-[a-z]*-$pid-")" = 3 ] ||
    { echo "  base pid '$pid', /dev/shm: $names"; return 1; }
}
B=$(cid base)
R0=$(docker inspect -f '{{.RestartCount}}' "$B" || echo 0)
t0=$(now)
docker exec "$B" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = alora-base ] && kill -9 ${p#/proc/}; done; true' ||
  fail "docker exec kill -9 alora-base"
end=$((SECONDS + 60))
until [ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$B")" = "$((R0 + 1)) true" ] || [ $SECONDS -ge $end ]; do
  sleep 0.2
done
check "kill -9 alora-base: its container restarted by the restart policy (restart count $R0 -> $((R0 + 1)))" \
  [ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$B")" = "$((R0 + 1)) true" ]
if wait_recovered "$BASE0" 120; then
  ok "recovered in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'): /healthz 200, new base $NEW_BASE, every worker re-attached to it"
else
  fail "no recovery after kill -9 alora-base within 120 s (healthz $(healthz))"
  status_json | jq -c '.processes[] | {role, id, base_instance, health}' || true
fi
check "the dead base's arenas are gone, the new base's 3 are there" arenas_fresh
phase_done "recovery from kill -9 alora-base"

BASE1=$NEW_BASE
t0=$(now)
dc stop -t 10 base >"$T/stop.log" 2>&1 || fail "stop base"
sleep 8   # meanwhile the workers lose their base, exit and are restarted by Docker without it
dc start base >"$T/start.log" 2>&1 || fail "start base"
if wait_recovered "$BASE1" 120; then
  ok "base stopped 8 s and started: recovered in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }') (new base $NEW_BASE, every worker on it)"
else
  fail "no recovery after stop/start base within 120 s (healthz $(healthz))"
  status_json | jq -c '.processes[] | {role, id, base_instance, health}' || true
  docker ps -a --filter "label=com.docker.compose.project=$P" --format '{{.Names}} {{.Status}}' || true
fi
check "the stopped base's arenas are gone, the new base's 3 are there" arenas_fresh
check "certainty and answerability after two base restarts: the same answers as before (HTTP)" \
  eval 'same_answer certainty && same_answer answerability'
phase_done "recovery from a stopped base"

# ---- 7. down -v ----------------------------------------------------------------------------------
if dc down -v -t 10 >"$T/down.log" 2>&1; then ok "$P down -v"; else tail -20 "$T/down.log"; fail "$P down -v"; fi
UP=0
left_c=$(docker ps -aq --filter "label=com.docker.compose.project=$P" | wc -l)
left_v=$(docker volume ls -q | grep -c "^${P}_" || true)
left_v=$((left_v + $(docker volume ls -q --filter "label=com.docker.compose.project=$P" | wc -l)))
left_n=$(docker network ls -q --filter "label=com.docker.compose.project=$P" | wc -l)
left_n=$((left_n + $(docker network ls --format '{{.Name}}' | grep -c "^${P}_" || true)))
left_m=$(grep -c -e "/volumes/${P}_" $(printf -- '-e /containers/%s/ ' "${IDS[@]}") /proc/mounts || true)
check "no container ($left_c), volume ($left_v), network ($left_n) or mount ($left_m: the shm tmpfs, containers' /dev/shm) of $P left" \
  [ "$left_c" = 0 -a "$left_v" = 0 -a "$left_n" = 0 -a "$left_m" = 0 ]
phase_done "down -v"

echo "--- timings (${COMPOSE_CMD[*]}, $(nproc) cores)"
printf '%s\n' "${PHASES[@]}"
if [ "$FAILS" -gt 0 ]; then
  echo "compose_test: $FAILS FAILED"
  exit 1
fi
echo "compose_test: all ok"
