#!/bin/sh
# alora-entry: container entry points of the alora images (installed as /usr/local/bin/alora-entry).
#   alora-entry prep [MODELS_DIR]            make the demo model + the 4 demo aLoRA adapters (idempotent)
#   alora-entry base CFG                     clear stale arenas in /dev/shm, exec alora-base -c CFG
#   alora-entry worker CFG NAME [REPLICA]    exec alora-worker; without REPLICA, claim the lowest free
#                                            replica slot of NAME (for `docker compose --scale`)
# Environment: ALORA_RUN_DIR (default /run/alora: the config's run_dir, a volume shared by every
# container of one base), ALORA_SLOTS (highest slot index + 1 to try, default 64).
set -eu
cmd=${1:-}
[ $# -gt 0 ] && shift
run_dir=${ALORA_RUN_DIR:-/run/alora}

case "$cmd" in
prep)
  m=${1:-/models}
  mkdir -p "$m"
  if [ ! -f "$m/model/config.json" ]; then
    echo "alora-entry prep: making a random '85m' Llama model in $m/model"
    alora make-model --arch llama --preset 85m --seed 7 "$m/model" >/dev/null
  fi
  # name invocation-tokens targets seed (the same adapters as scripts/run.sh and deploy/local.cfg)
  for spec in certainty:500,501,502:q,k,v,o:3 answerability:505,506:q,v,up,down:4 \
              query_rewrite:507,508:q,v:5 hallucination_detection:509,510,511:q,k,v,o:6; do
    IFS=: read -r name inv targets seed <<SPEC
$spec
SPEC
    if [ ! -f "$m/$name/adapter_config.json" ]; then
      echo "alora-entry prep: making aLoRA adapter '$name' (invocation $inv)"
      alora make-adapter --model "$m/model" --targets "$targets" --rank 8 --alpha 16 \
        --invocation "$inv" --seed "$seed" "$m/$name" >/dev/null
    fi
  done
  echo "alora-entry prep: $m is ready"
  ;;
base)
  [ $# -eq 1 ] || { echo "usage: alora-entry base CFG" >&2; exit 2; }
  # Arenas are /dev/shm/alora-<tag>-<pid>-<32 hex>, created by alora-base only. A base that died
  # leaves them behind (a container restart keeps a pod's /dev/shm emptyDir): remove those whose
  # process is gone, or whose pid is ours (a restarted container reuses pid 1; this shell becomes
  # alora-base). Segments of live processes (another base on a shared host) are left alone.
  for f in /dev/shm/alora-*; do
    [ -e "$f" ] || continue
    rest=${f##*/}
    rest=${rest%-*}
    pid=${rest##*-}
    case "$pid" in '' | *[!0-9]*) continue ;; esac
    if [ "$pid" = "$$" ] || [ ! -d "/proc/$pid" ]; then
      rm -f "$f" && echo "alora-entry: removed stale arena ${f##*/}"
    fi
  done
  exec alora-base -c "$1"
  ;;
worker)
  [ $# -ge 2 ] && [ $# -le 3 ] || { echo "usage: alora-entry worker CFG NAME [REPLICA]" >&2; exit 2; }
  cfg=$1 name=$2
  if [ $# -eq 3 ]; then
    exec alora-worker -c "$cfg" --intrinsic "$name" --replica "$3"
  fi
  # A worker's socket is ipc://<run_dir>/worker-NAME-K.ipc and its id NAME-K, so the replicas of one
  # compose service need distinct K: hold an flock on <run_dir>/slots/NAME-K.lock for the life of
  # the worker (fd 9 stays open across exec; the kernel drops the lock when the worker exits).
  mkdir -p "$run_dir/slots"
  k=0
  while [ "$k" -lt "${ALORA_SLOTS:-64}" ]; do
    exec 9>"$run_dir/slots/$name-$k.lock"
    if flock -n 9; then
      echo "alora-entry: worker $name claimed replica slot $k"
      exec alora-worker -c "$cfg" --intrinsic "$name" --replica "$k"
    fi
    exec 9>&-
    k=$((k + 1))
  done
  echo "alora-entry: no free replica slot for $name in $run_dir/slots" >&2
  exit 1
  ;;
*)
  echo "usage: alora-entry prep [MODELS_DIR] | base CFG | worker CFG NAME [REPLICA]" >&2
  exit 2
  ;;
esac
