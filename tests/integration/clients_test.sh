#!/usr/bin/env bash
# clients_test.sh: real clients from PyPI (pinned in tests/integration/requirements.txt) drive alora
# as they drive vLLM, on the random "small" model with the demo tokenizer:
# - IBM's granite-common: its IntrinsicsRewriter turns canned RAG requests into intrinsic requests
#   from the io.yaml fixtures (tests/fixtures/granite_common: structured_outputs / guided_json
#   schemas, logprobs for likelihoods, documents), the openai client sends them, and its
#   IntrinsicsResultProcessor turns the answers into results (tests/integration/granite_clients.py).
#   Every raw output validates against its io.yaml schema, every processor returns a result.
# - IBM's granite-io: its I/O processors (answerability, certainty, query rewrite, citations, the
#   Granite 3.3 base processor, the RAG agent library's certainty composite) render Granite prompts
#   themselves and send /v1/completions with guided_choice / guided_regex / guided_json through its
#   openai backend; raw outputs obey those constraints, every processor returns a result; what alora
#   refuses (echo for prompt logprobs, max_tokens over the context) is a clean 400
#   (tests/integration/granite_io_clients.py).
# - litellm: completion(model="openai/...", api_base=...) with response_format json_schema,
#   streaming, extra_body structured_outputs and intrinsics as models
#   (tests/integration/litellm_clients.py).
# A client whose package cannot be installed is a SKIP line; the test skips (77) only when none can.
NEEDS=curl TMP_TAG=clients
source "$(dirname "$0")/lib.sh"
text_models 23
# the modules each client needs
GC_MODS="granite_common, openai, jsonschema, yaml"
GIO_MODS="granite_io, openai, jsonschema"
LIT_MODS="litellm, jsonschema"
has() { "$PY" -c "import $1" 2>/dev/null; }
if ! test_python "granite_common, granite_io, litellm, openai, jsonschema, yaml"; then
  if ! has "$GC_MODS" && ! has "$GIO_MODS" && ! has "$LIT_MODS"; then
    echo "SKIP: cannot install tests/integration/requirements.txt: $(tail -2 "$T/pip.log" 2>/dev/null)"; exit 77
  fi
fi
cat >"$T/c.cfg" <<CFG
run_dir = "$T/run-c";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; threads = 1; };
worker = { kv_blocks = 128; heartbeat_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 120000; http = "$H";
           tokenizer = "$TOK"; model_name = "tiny-base"; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; },
  { name = "answerability"; adapter = "$T/ans"; replicas = 1; },
  { name = "query_rewrite"; adapter = "$T/ans"; replicas = 1; },
  { name = "citations"; adapter = "$T/cert"; replicas = 1; },
  { name = "hallucination_detection"; adapter = "$T/ans"; replicas = 1; }
);
CFG
start_up c || { fail "cluster did not start"; exit 1; }
# client NAME MODULES SCRIPT ARGS...: runs one client's script; its lines become ok lines
client() {
  local name=$1 mods=$2 script=$3; shift 3
  if ! has "$mods"; then
    echo "SKIP: $name: not installed ($("$PY" -c "import $mods" 2>&1 | tail -1); pip: $(tail -1 "$T/pip.log" 2>/dev/null))"
    return
  fi
  local v left=$((840 - SECONDS))
  v=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)
  # each takes seconds; up to 5 minutes on a loaded 2-core machine, within ctest's 900 s
  [ $left -gt 300 ] && left=300
  [ $left -ge 30 ] || { fail "$name $v: no time left (${SECONDS} s used)"; return; }
  if timeout $left "$PY" "$SRC/tests/integration/$script" "$@" >"$T/$script.out" 2>&1; then
    while read -r l; do ok "$name $v: $(cut -c1-300 <<<"$l")"; done <"$T/$script.out"
  else
    fail "$name $v: $(tail -5 "$T/$script.out")"
  fi
}
client granite-common "$GC_MODS" granite_clients.py "$H/v1" "$SRC/tests/fixtures/granite_common"
client granite-io "$GIO_MODS" granite_io_clients.py "$H/v1"
# litellm must not fetch its model cost map (nor anything else) from the network
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False client litellm "$LIT_MODS" litellm_clients.py "$H/v1"
R="ipc://$T/run-c/router.ipc" stop_up c
[ $FAILS -eq 0 ] && echo "all client tests passed" || echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
