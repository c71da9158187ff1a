#!/usr/bin/env bash
# run.sh: the main job (`make run`). Until the cluster lands this runs the single-process engine:
# it makes a small random model and an aLoRA adapter, then generates with the base model, with the
# aLoRA (invocation present and absent) and with the same weights as a plain LoRA.
set -euo pipefail
BUILD=${1:-build}
ALORA="$BUILD/alora"
WORK=${ALORA_RUN_DIR:-$BUILD/run}
mkdir -p "$WORK"
if [ ! -f "$WORK/model/config.json" ]; then
  echo "== making a random 'small' Llama model in $WORK/model"
  "$ALORA" make-model --arch llama --preset small --seed 7 "$WORK/model"
fi
if [ ! -f "$WORK/alora/adapter_config.json" ]; then
  echo "== making a random aLoRA adapter (invocation 50,51,52) in $WORK/alora"
  "$ALORA" make-adapter --model "$WORK/model" --targets q,k,v,o --rank 8 --alpha 16 \
    --invocation 50,51,52 --seed 3 "$WORK/alora"
fi
convo=$(seq -s, 3 2 300)          # a 149-token "conversation"
with_inv="$convo,50,51,52,60,61"  # ... followed by the intrinsic's invocation
echo
echo "== base model"
"$ALORA" generate --model "$WORK/model" --tokens "$with_inv" --max-tokens 12 --ignore-eos
echo
echo "== aLoRA: the invocation starts at position 149; only tokens from there on are adapted"
"$ALORA" generate --model "$WORK/model" --adapter "$WORK/alora" --tokens "$with_inv" --max-tokens 12 --ignore-eos
echo
echo "== aLoRA without its invocation: runs as the base model (activation_start none)"
"$ALORA" generate --model "$WORK/model" --adapter "$WORK/alora" --tokens "$convo" --max-tokens 12 --ignore-eos
echo
echo "== JSON output with top-3 logprobs"
"$ALORA" generate --model "$WORK/model" --adapter "$WORK/alora" --tokens "$with_inv" --max-tokens 3 \
  --top-logprobs 3 --ignore-eos --json
