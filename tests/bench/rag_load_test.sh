#!/usr/bin/env bash
# rag_load_test.sh: smoke of the RAG workload driver (bench/rag_load.py) against a real alora cluster
# (small random model, the four demo intrinsics over HTTP), so the benchmark cannot rot: N=2 closed
# loop for a few turns; every call must answer 200 with a parsed intrinsic result (or exactly K answer
# tokens), every prompt must have the token count of the driver's own rendering (what llama-server
# is sent in the benchmark), and the report must carry its fields; then a clean shutdown.
NEEDS="curl python3"
TMP_TAG=rag
source "$(dirname "$0")/../integration/lib.sh"
TOK="$SRC/deploy/tokenizer"
[ -f "$TOK/tokenizer.json" ] || { echo "SKIP: $TOK missing"; exit 77; }
"$ALORA" make-model --arch llama --preset small --seed 11 "$T/model" >/dev/null || exit 1
mk() { "$ALORA" make-adapter --model "$T/model" --targets "$2" --rank 4 --alpha 8 --invocation "$3" --seed "$4" "$T/$1" >/dev/null || exit 1; }
mk certainty q,k,v,o 600,601,602 3
mk answerability q,v,up,down 605,606 4
mk query_rewrite q,v 607,608 5
mk hallucination_detection q,k,v,o 609,610,611 6
PORT=$(free_port)
cat >"$T/rag.cfg" <<CFG
run_dir = "$T/run-rag";
log_level = "warn";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; max_batch_tokens = 256; threads = 1; };
worker = { kv_blocks = 128; threads = 1; heartbeat_ms = 300; };
router = { http = "http://127.0.0.1:$PORT"; tokenizer = "$TOK"; model_name = "alora-small"; request_timeout_ms = 120000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/certainty"; replicas = 1; max_tokens = 4; parser = "certainty";
    outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; },
  { name = "answerability"; adapter = "$T/answerability"; replicas = 1; max_tokens = 4; parser = "answerability";
    outputs = ["answerable", "unanswerable"]; documents = "template"; },
  { name = "query_rewrite"; adapter = "$T/query_rewrite"; replicas = 1; max_tokens = 24; parser = "query_rewrite";
    documents = "none"; },
  { name = "hallucination_detection"; adapter = "$T/hallucination_detection"; replicas = 1; max_tokens = 24;
    parser = "hallucination_detection"; }
);
CFG
start_up rag || { fail "cluster did not start"; exit 1; }
R="ipc://$T/run-rag/router.ipc"
H="http://127.0.0.1:$PORT"
# 2 clients, 2 conversations of 3 turns each (bounded by --max-convs, not by time)
python3 bench/rag_load.py run --system alora --url "$H" --clients 2 --duration 600 --turns 3 --max-convs 2 \
  --answer-tokens 8 --doc-words 20 --seed 5 --tokenize "$ALORA tokenize --model $TOK" --out "$T/r.json" >"$T/run.out" 2>&1
rc=$?
cat "$T/run.out"
check "driver exited 0" [ $rc -eq 0 ]
J="$T/r.json"
check "6 turns done (2 conversations x 3)" [ "$(jq '.summary.n_turns' "$J")" = 6 ]
check "every call answered 200" [ "$(jq '[.calls[] | select(.status != 200)] | length' "$J")" = 0 ]
check "every call ok (parsed intrinsic result / K answer tokens / prompt tokens = driver's rendering)" \
  [ "$(jq '[.calls[] | select(.ok != true)] | length' "$J")" = 0 ]
jq -c '[.calls[] | select(.ok != true)] | .[:3]' "$J"
check "intrinsic results are objects with their parser's keys" \
  [ "$(jq '[.calls[] | select(.kind == "certainty") | .result | has("certainty")] | all' "$J")" = true ]
check "answerability parsed" \
  [ "$(jq '[.calls[] | select(.kind == "answerability") | .result | has("answerability")] | all' "$J")" = true ]
check "2 to 4 intrinsics per turn" \
  [ "$(jq '[.turns[] | .n_intrinsics | select(. < 2 or . > 4)] | length' "$J")" = 0 ]
check "the answer is K=8 tokens" \
  [ "$(jq '[.calls[] | select(.kind == "answer") | .completion_tokens == 8] | all' "$J")" = true ]
for f in turns_per_s intrinsic_calls_per_s goodput_turns_per_s slo_attainment prefix_cache_hit_rate \
         metrics_prefix_cache_hit_rate kv_use_mean kv_use_max turn_e2e_p99_ms; do
  check "summary.$f is a number" [ "$(jq ".summary.$f | type" "$J")" = '"number"' ]
done
for k in answer answerability certainty intrinsics; do
  for m in ttft_p50_ms ttft_p90_ms ttft_p99_ms e2e_p50_ms e2e_p90_ms e2e_p99_ms; do
    check "per_call.$k.$m is a positive number" [ "$(jq ".summary.per_call.$k.$m > 0" "$J")" = true ]
  done
done
check "later turns hit the prefix cache" [ "$(jq '.summary.prefix_cache_hit_rate > 0.3' "$J")" = true ]
check "router counter agrees with the responses' cached tokens" \
  [ "$(jq '.summary.metrics_prefix_hit_tokens >= .summary.cached_prompt_tokens * 0.5' "$J")" = true ]
# open loop: conversations arriving at 4/s (Poisson), 2 of them, one turn each
python3 bench/rag_load.py run --system alora --url "$H" --rate 4 --duration 600 --turns 1 --max-convs 2 \
  --answer-tokens 4 --doc-words 10 --seed 6 --out "$T/open.json" >"$T/open.out" 2>&1
check "open loop: exited 0" [ $? -eq 0 ]
check "open loop: 2 turns, every call ok" \
  [ "$(jq '[.summary.n_turns, ([.calls[] | select(.ok != true)] | length)]' -c "$T/open.json")" = "[2,0]" ]
# the report subcommand reads it back
python3 bench/rag_load.py report "$J" --md "$T/t.md" --dat "$T/dat" >/dev/null
check "report table has the alora row" grep -q '^| alora | 2 |' "$T/t.md"
check "gnuplot data written" [ -s "$T/dat/alora.dat" ]
stop_up rag
[ $FAILS -eq 0 ] || { echo "$FAILS failure(s)"; exit 1; }
echo "all ok"
