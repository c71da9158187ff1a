#!/usr/bin/env bash
# clients_test.sh: IBM's granite-common (PyPI, pinned in tests/integration/requirements.txt) drives
# alora as it drives vLLM: its IntrinsicsRewriter turns canned RAG requests into intrinsic requests
# from the io.yaml fixtures (tests/fixtures/granite_common: structured_outputs / guided_json
# schemas, logprobs for likelihoods, documents), the openai client sends them, and its
# IntrinsicsResultProcessor turns the answers into results (tests/integration/granite_clients.py).
# On the random model: every raw output validates against its io.yaml schema, every processor
# returns a result. Skips (77) only where the packages cannot be installed.
NEEDS=curl TMP_TAG=clients
source "$(dirname "$0")/lib.sh"
text_models 23
PY=python3
if ! $PY -c "import granite_common, openai, jsonschema, yaml" 2>/dev/null; then
  VENV=${ALORA_BUILD:-$SRC/build}/clients-test-venv
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import granite_common, openai, jsonschema, yaml" 2>/dev/null; then
    (python3 -m venv "$VENV" && timeout 300 "$VENV/bin/pip" install --quiet -r "$SRC/tests/integration/requirements.txt") >"$T/pip.log" 2>&1
  fi
  PY="$VENV/bin/python"
  "$PY" -c "import granite_common, openai, jsonschema, yaml" 2>/dev/null ||
    { echo "SKIP: cannot install tests/integration/requirements.txt: $(tail -2 "$T/pip.log")"; exit 77; }
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
  { name = "query_rewrite"; adapter = "$T/ans"; replicas = 1; }
);
CFG
start_up c || { fail "cluster did not start"; exit 1; }
if "$PY" "$SRC/tests/integration/granite_clients.py" "$H/v1" "$SRC/tests/fixtures/granite_common" >"$T/gc.out" 2>&1; then
  while read -r l; do ok "granite-common $(cut -c1-200 <<<"$l")"; done <"$T/gc.out"
else
  fail "granite-common: $(tail -5 "$T/gc.out")"
fi
R="ipc://$T/run-c/router.ipc" stop_up c
[ $FAILS -eq 0 ] && echo "all client tests passed" || echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
