#!/usr/bin/env python3
"""make_seeds.py: writes the committed seed corpora fuzz/corpus/<target>/ from tests/fixtures and
hand-made edge cases. Run from the repository root: python3 fuzz/make_seeds.py (idempotent: the
seed files are named by content; regression inputs of fixed crashes live in the same folders under
crash-* names and are kept)."""
import hashlib
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'fuzz', 'corpus')


def rd(p, mode='rb'):
    with open(os.path.join(ROOT, p), mode) as f:
        return f.read()


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = name or 'seed-' + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def js(o):
    return json.dumps(o, ensure_ascii=False)


# ---- openai: request bodies ----------------------------------------------------------------------
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
for body in [
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "a"}]}],
     "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": ["x", "y"], "seed": 3, "logprobs": True, "top_logprobs": 2,
     "stream": True, "stream_options": {"include_usage": True}, "presence_penalty": 1, "frequency_penalty": -1,
     "logit_bias": {"5": -100, "7": 3}, "n": 1, "user": "u"},
    {"model": "m", "messages": [{"role": "user", "content": "w"}], "tools": [TOOL], "tool_choice": "required",
     "parallel_tool_calls": False},
    {"model": "m", "messages": [{"role": "user", "content": "w"}], "tools": [TOOL],
     "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"model": "m", "messages": [{"role": "user", "content": "w"},
                                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}], "tools": [TOOL]},
    {"model": "m", "messages": [{"role": "user", "content": "j"}],
     "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                         "properties": {"a": {"type": "integer", "minimum": 0}}, "required": ["a"]}}}},
    {"model": "m", "messages": [{"role": "user", "content": "j"}], "response_format": {"type": "json_object"}},
    {"model": "m", "messages": [{"role": "user", "content": "c"}], "structured_outputs": {"choice": ["yes", "no"]}},
    {"model": "m", "messages": [{"role": "user", "content": "r"}], "guided_regex": "[a-z]{1,5}", "min_tokens": 2,
     "repetition_penalty": 1.2, "skip_special_tokens": False},
    {"model": "m", "messages": [{"role": "user", "content": "d"}], "documents": [{"text": "doc", "title": "t", "doc_id": 3}]},
    {"model": "m", "prompt": "once upon", "max_tokens": 3, "logprobs": 2, "echo": False},
    {"model": "m", "prompt": [1, 2, 3, 4], "max_completion_tokens": 2, "stop": "\n"},
    {"model": "m", "prompt": ["a"], "temperature": None},
]:
    put('openai', js(body))
for edge in ['', '{}', '[]', 'null', '{"model":1}', '{"model":"m","messages":[]}', '{"model":"m","messages":[{}]}',
             '{"model":"m","messages":[{"role":"user","content":"\\u0000"}]}', '{"model":"m","temperature":1e400}',
             '{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}', '{"a":' * 40]:
    put('openai', edge)

# ---- chat: message JSON (the chat goldens' conversations) ---------------------------------------
seen = set()
for case in json.loads(rd('tests/fixtures/chat/chat_goldens.json')):
    o = {"messages": case["messages"]}
    if case.get("documents"):
        o["documents"] = case["documents"]
    s = js(o)
    if s not in seen and len(seen) < 24:
        seen.add(s)
        put('chat', s)
for edge in ['[]', '[{"role":"user","content":"x"}]', '{"messages":[{"role":"wizard","content":""}]}',
             '[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":{"a":[1,{}]}}}]}]',
             '[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]',
             '{"messages":[{"role":"user","content":"q"}],"documents":[{"text":"t","doc_id":"x"},{"text":""}]}']:
    put('chat', edge)

# ---- chat_tools: model outputs ------------------------------------------------------------------
for out in ['<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
            'Sure. <tool_call>[{"name": "search", "arguments": "{\\"q\\": 1}"}]',
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "x"}}\n</tool_call>\n<tool_call>\n{"name": "search", "arguments": {}}',
            '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}; {"name": "search", "parameters": {}}',
            '[{"name": "search", "arguments": {}}]', '{"name": "nope", "arguments": {}}', 'plain text', '',
            '<tool_call>', '<|tool_call|>[', '[{"name": "search", "arguments": "not json"}]']:
    put('chat_tools', out)

# ---- model_config / adapter_config --------------------------------------------------------------
for m in ['llama_f32', 'llama_bf16', 'granite_f32']:
    put('model_config', rd(f'tests/fixtures/oracle/{m}/config.json'))
put('model_config', '{}')
put('model_config', '{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":1,'
    '"num_attention_heads":4,"num_key_value_heads":0,"intermediate_size":1,"vocab_size":1,'
    '"rope_scaling":{"rope_type":"llama3","factor":8.0},"eos_token_id":[1,2,3]}')
for i, a in enumerate(['alora_mlp', 'alora_qkvo', 'alora_qv', 'lora_plain']):
    put('adapter_config', bytes([i]) + rd(f'tests/fixtures/oracle/adapters/{a}/adapter_config.json'))
put('adapter_config', b'\x01{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":"all-linear","rank_pattern":{"q_proj":4},'
    b'"alpha_pattern":{"model.layers.0.self_attn.q_proj":2},"use_rslora":true,"invocation_string":"<x>"}')

# ---- safetensors --------------------------------------------------------------------------------
def st(header, data=b''):
    h = json.dumps(header).encode()
    return struct.pack('<Q', len(h)) + h + data
put('safetensors', st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b'\0' * 8))
put('safetensors', st({"__metadata__": {"format": "pt"}, "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
                       "c": {"dtype": "F16", "shape": [], "data_offsets": [8, 10]}}, b'\x80\x3f' * 5))
put('safetensors', rd('tests/fixtures/oracle/adapters/alora_qv/adapter_model.safetensors'))
put('safetensors', '{"x":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}\0abcd')
put('safetensors', '{"x":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}\0abcd')
put('safetensors', 'I' + js({"metadata": {"total_size": 8}, "weight_map": {"a": "shard-1.safetensors"}}))
put('safetensors', 'I' + js({"weight_map": {"a": "../shard-1.safetensors", "b": "shard-1.safetensors"}}))

# ---- tokenizer ----------------------------------------------------------------------------------
for t in ['bl_gpt2', 'bl_llama3', 'sp_meta']:
    put('tokenizer', rd(f'tests/fixtures/tokenizer/{t}.tokenizer.json'))
put('tokenizer', js({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x41>": 3}, "merges": ["a b"],
                               "byte_fallback": True, "unk_token": None},
                     "added_tokens": [{"id": 4, "content": "<s>", "special": True, "lstrip": True, "rstrip": False,
                                       "single_word": False, "normalized": False}],
                     "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                                        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
                     "pre_tokenizer": None,
                     "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                                {"Sequence": {"id": "A", "type_id": 0}}],
                                        "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]}}},
                     "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                                  {"type": "ByteFallback"}, {"type": "Fuse"},
                                                                  {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}))
put('tokenizer', js({"model": {"type": "BPE", "vocab": {"x": 0}, "merges": [["x", "x"]]},
                     "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                         {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\s+(?!\\S)"}, "behavior": "Isolated", "invert": False},
                         {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
                     "decoder": {"type": "ByteLevel"}}))

# ---- tokenize: text ------------------------------------------------------------------------------
corpus = rd('tests/fixtures/tokenizer/train_corpus.txt')
for i in range(0, 2400, 400):
    put('tokenize', corpus[i:i + 400])
for t in ['', ' ', '  \n\n\t ', "I'm   don't 's 've", '<|endoftext|>hi<|pad|> left<sep>WORD', '<|begin_of_text|><|start_of_role|>user<|end_of_role|>x<|end_of_text|>',
          '<s> </s><unk><|eot|>', 'caf\u00e9 \u2581\u2581x \U0001f600 \u0301e', '12345678901234567890', '\u00a0\u2028\u180e\u3000x']:
    put('tokenize', t)
for b in [b'\xff\xfe\x00a', b'\xc3', b'\xe2\x96', b'a\x00b', b'\xf4\x90\x80\x80', b'\xed\xa0\x80']:
    put('tokenize', b)

# ---- cluster_cfg --------------------------------------------------------------------------------
put('cluster_cfg', rd('deploy/local.cfg'))
put('cluster_cfg', rd('deploy/intrinsics.cfg'))
put('cluster_cfg', 'base = { model = "m"; instances = 3; listen = "tcp://127.0.0.1:5555"; };\n'
    'router = { http = "0.0.0.0:8080"; api_keys = ["k"]; max_body = "4M"; };\n'
    'intrinsics = ( { name = "a"; adapter = "x"; replicas = 2; parser = "choice"; outputs = ["y", "n"]; '
    'invocation_tokens = "1, 2 3"; documents = "instruction"; } );\n')
put('cluster_cfg', 'base = { model = "m"; listen = "ipc:///tmp/x/base.ipc"; instances = 2; }; '
    'intrinsics = ( { name = "a"; adapter = "x"; }, { name = "a"; adapter = "y"; } );')
put('cluster_cfg', 'intrinsics = ( { name = "certainty"; invocation_string = "<|start_of_role|>certainty<|end_of_role|>"; } );')

# ---- constrain: kind byte (0 regex, 1 choice, 2 schema, 3 any object) + text --------------------
rc = json.loads(rd('tests/fixtures/constrain/regex_cases.json'))['cases']
for c in rc[::max(1, len(rc) // 20)][:20]:
    put('constrain', b'\0' + c['pattern'].encode())
sc = json.loads(rd('tests/fixtures/constrain/schema_cases.json'))['schemas']
for c in sc[::max(1, len(sc) // 20)][:20]:
    put('constrain', b'\2' + js(c['schema']).encode())
for t in [b'\1["yes","no","maybe so"]', b'\1[]', b'\1["", "\\u00e9"]', b'\3', b'\0(a|b)*c{2,4}[^x-z]\\d+',
          b'\0\\p{L}+|\\u00e9?', b'\2{"$ref":"#/$defs/a","$defs":{"a":{"type":"array","items":{"$ref":"#/$defs/a"}}}}',
          b'\2{"anyOf":[{"type":"string","format":"date"},{"type":"number","minimum":-1.5,"exclusiveMaximum":10}]}',
          b'\2{"type":"object","additionalProperties":{"type":"integer"},"minProperties":1,"maxProperties":3}']:
    put('constrain', t)

# ---- intrinsics_parse: [intrinsic][top_k][n][n ids][n*k (id, logprob)] text ----------------------
def intr(sel, text, toks=(), top=()):
    k = len(top[0]) if top else 0
    b = bytes([sel, k, len(toks)]) + b''.join(struct.pack('<i', t) for t in toks)
    for row in top:
        for (i, lp) in row:
            b += struct.pack('<if', i, lp)
    return b + text.encode()
TEXTS = ['7', 'answerable', 'unanswerable', 'Y', 'yes', 'No', '{"rewritten_question": "what?"}',
         '[{"i": 0, "r": 0.9, "e": "x"}]', '{"score": "yes"}', '[{"r": 0, "c": [1, 2]}]']
for sel in range(12):
    for j in (0, 3, 6):
        put('intrinsics_parse', intr(sel, TEXTS[(sel + j) % len(TEXTS)]))
put('intrinsics_parse', intr(0, '8', [23], [[(23, -0.1), (22, -2.0), (-5, float('nan'))]]))
put('intrinsics_parse', intr(1, 'answerable', [3281, 540], [[(3281, -0.2), (403, float('-inf'))], [(540, 0.0), (0, 1e30)]]))

# ---- rpc: [kind][method] + protobuf payload, or 0xf0 + a raw frame ------------------------------
def varint(n):
    out = b''
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def fv(f, v): return varint(f << 3) + varint(v)
def fb(f, b): return varint(f << 3 | 2) + varint(len(b)) + b
def ff(f, x): return varint(f << 3 | 5) + struct.pack('<f', x)
def packed(f, vals): return fb(f, b''.join(varint(v) for v in vals))
def pf(f, vals): return fb(f, b''.join(struct.pack('<f', v) for v in vals))
sampling = (ff(1, 0.7) + fv(2, 5) + ff(3, 0.9) + fv(5, 42) + fv(6, 8) + fv(7, 3) + packed(8, [1, 2]) + ff(10, 1.1) +
            ff(11, 0.5) + fv(13, 1) + packed(14, [3, 4]) + pf(15, [-1.0, 2.0]) + fb(16, b'ab\0c\0') + fv(17, 1) +
            fb(18, b'[a-c]+'))
for kind, method, payload in [
    (0, 4, packed(1, [1, 2, 3, 70000, -1])),
    (0, 5, fv(1, 9) + packed(2, [5, 6])),
    (0, 6, fv(1, 1) + fb(2, sampling) + fv(3, 1)),
    (0, 6, fv(1, 1) + fb(2, fv(17, 3) + fb(18, b'{"type":"object","properties":{"a":{"type":"string"}}}'))),
    (0, 6, fv(1, 1) + fb(2, fv(17, 2) + fb(18, b'["x","y"]'))),
    (0, 9, fv(1, 1) + fv(2, 16)),
    (0, 32, fb(1, fv(1, 3) + fv(2, 10)) + fv(2, 10) + packed(3, [7, 8, 9]) + fv(4, 10) + fb(5, sampling) + fv(6, 1)),
    (0, 64, fb(1, b'w-1') + fb(2, b'certainty') + fb(3, b'sha256:00') + packed(4, [500, 501]) + fv(6, 8) + fb(7, b'ipc:///x')),
    (0, 65, fb(1, b'w-1') + fv(2, 1) + fv(3, 2)),
    (0, 96, fb(1, b's1') + fb(3, b'sys')),
    (0, 100, fb(1, b's1') + fb(2, b'certainty') + fb(4, sampling)),
    (0, 101, fb(1, b'certainty') + packed(2, [1, 2, 3]) + fv(3, 4) + fb(5, sampling) + fb(7, b'hello')),
    (1, 6, packed(1, [1, 2]) + fb(2, fv(1, 2) + pf(2, [-0.1, -0.2]) + packed(3, [1, 2, 3, 4]) + pf(4, [-0.1] * 4)) + fv(3, 1)),
    (1, 101, packed(1, [1]) + fb(2, b'7') + fv(3, 5) + fb(8, b'w') + fb(10, b'{"certainty":0.7}')),
    (1, 102, b''),
    (3, 6, fv(1, 3) + fb(2, b'seq_id: sequence 1 does not exist') + fv(3, 100)),
    (0, 2, b''), (0, 250, b'\x08\x01'),
]:
    put('rpc', bytes([kind, method]) + payload)
hdr = struct.pack('<IBBHQQIHH', 0x50524c41, 1, 0, 6, 1, 2, 2, 0, 0) + b'\x08\x01'
put('rpc', b'\xf0' + hdr)
put('rpc', b'\xf0' + hdr[:20])
# ---- dictionaries: fuzz/dict/<target>.dict (libFuzzer -dict) -----------------------------------
JSON = ['{', '}', '[', ']', ':', ',', '"', '\\"', '\\u0000', '\\ud800', 'true', 'false', 'null', '-0', '1e308',
        '-1', '0.5', '1e-400', '18446744073709551616']


def dict_escape(tok):
    out = ''
    for b in tok.encode():
        c = chr(b)
        out += '\\\\' if c == '\\' else '\\"' if c == '"' else c if 32 <= b < 127 else '\\x%02X' % b
    return '"' + out + '"'


KEYS = {
    'openai': ['model', 'messages', 'role', 'content', 'system', 'user', 'assistant', 'tool', 'prompt', 'max_tokens',
               'max_completion_tokens', 'temperature', 'top_p', 'stop', 'seed', 'logprobs', 'top_logprobs', 'stream',
               'stream_options', 'include_usage', 'presence_penalty', 'frequency_penalty', 'repetition_penalty',
               'min_tokens', 'logit_bias', 'skip_special_tokens', 'response_format', 'json_schema', 'json_object',
               'schema', 'type', 'structured_outputs', 'guided_json', 'guided_choice', 'guided_regex', 'choice',
               'regex', 'json', 'tools', 'tool_choice', 'function', 'name', 'parameters', 'arguments', 'tool_calls',
               'tool_call_id', 'parallel_tool_calls', 'required', 'auto', 'none', 'documents', 'text', 'n', 'echo'],
    'chat': ['messages', 'documents', 'role', 'content', 'text', 'title', 'doc_id', 'type', 'tool_calls', 'function',
             'name', 'arguments', 'tool_call_id', 'system', 'user', 'assistant', 'tool'],
    'chat_tools': ['<|tool_call|>', '<tool_call>', '</tool_call>', '<|python_tag|>', 'name', 'arguments',
                   'parameters', 'get_weather', 'search', ';'],
    'model_config': ['architectures', 'LlamaForCausalLM', 'GraniteForCausalLM', 'model_type', 'hidden_size',
                     'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'intermediate_size',
                     'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'rope_type',
                     'llama3', 'factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings',
                     'tie_word_embeddings', 'bos_token_id', 'eos_token_id', 'torch_dtype', 'bfloat16', 'float32',
                     'embedding_multiplier', 'attention_multiplier', 'residual_multiplier', 'logits_scaling',
                     'hidden_act', 'silu', 'attention_bias', 'mlp_bias'],
    'adapter_config': ['peft_type', 'LORA', 'r', 'lora_alpha', 'target_modules', 'all-linear', 'q_proj', 'k_proj',
                       'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'rank_pattern', 'alpha_pattern',
                       'use_rslora', 'use_dora', 'bias', 'none', 'alora_invocation_tokens', 'invocation_string',
                       'layers_to_transform', 'layers_pattern', 'fan_in_fan_out', 'modules_to_save',
                       'model.layers.0.', 'self_attn', 'mlp', 'lora_dropout'],
    'safetensors': ['dtype', 'shape', 'data_offsets', '__metadata__', 'F32', 'F16', 'BF16', 'I64', 'weight_map',
                    'metadata', 'total_size', 'shard-1.safetensors', '../', '/'],
    'tokenizer': ['model', 'type', 'BPE', 'vocab', 'merges', 'byte_fallback', 'unk_token', 'fuse_unk',
                  'ignore_merges', 'added_tokens', 'id', 'special', 'lstrip', 'rstrip', 'single_word', 'normalized',
                  'normalizer', 'normalizers', 'Sequence', 'Prepend', 'prepend', 'Replace', 'pattern', 'String',
                  'Regex', 'content', 'NFC', 'NFKC', 'pre_tokenizer', 'pretokenizers', 'Split', 'behavior',
                  'Isolated', 'Removed', 'MergedWithPrevious', 'invert', 'ByteLevel', 'add_prefix_space',
                  'use_regex', 'trim_offsets', 'Metaspace', 'replacement', 'prepend_scheme', 'first', 'always',
                  'Digits', 'individual_digits', 'post_processor', 'TemplateProcessing', 'single', 'pair',
                  'SpecialToken', 'special_tokens', 'ids', 'tokens', 'decoder', 'decoders', 'ByteFallback', 'Fuse',
                  'Strip', 'start', 'stop', '<0x00>', '\\p{L}', '(?i:', '\\s+(?!\\S)', '\u2581'],
    'cluster_cfg': ['run_dir', 'log_level', 'base', 'model', 'listen', 'kv_blocks', 'block_size', 'max_batch_tokens',
                    'max_seqs', 'threads', 'lease_ttl_ms', 'max_leases', 'default_max_tokens', 'device', 'weights',
                    'instances', 'worker', 'heartbeat_ms', 'health_ms', 'router', 'http', 'max_queue',
                    'worker_ttl_ms', 'request_timeout_ms', 'chat_template', 'tokenizer', 'model_name', 'api_keys',
                    'allow_insecure', 'allow_insecure_rpc', 'max_body', 'http_threads', 'up', 'grace_ms',
                    'backoff_min_ms', 'backoff_max_ms', 'intrinsics', 'name', 'adapter', 'replicas', 'max_tokens',
                    'capacity', 'top_logprobs', 'parser', 'instruction', 'invocation_string', 'invocation_tokens',
                    'documents', 'outputs', '=', ';', '(', ')', '@include', 'ipc://', 'tcp://', '0.0.0.0',
                    '127.0.0.1', 'cuda', 'cpu', 'bf16', '4M', 'choice', 'certainty', 'instruction'],
    'constrain': ['type', 'object', 'array', 'string', 'integer', 'number', 'boolean', 'properties', 'required',
                  'items', 'prefixItems', 'additionalProperties', 'enum', 'const', 'anyOf', 'oneOf', 'allOf', '$ref',
                  '$defs', 'definitions', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
                  'minLength', 'maxLength', 'pattern', 'format', 'date-time', 'date', 'uuid', 'email', 'minItems',
                  'maxItems', 'minProperties', 'maxProperties', '#/', '(?:', '[^', '\\d', '\\w', '\\s',
                  '\\p{L}', '{2,5}', '*?', '|', '^', '$', '.'],
    'intrinsics_parse': ['answerable', 'unanswerable', 'rewritten_question', 'score', 'yes', 'no', 'faithful',
                         'unfaithful', 'partial', 'relevant', 'irrelevant', 'r', 'c', 'i', 'e', '<|end_of_text|>'],
    'rpc': ['ALRP'],
    'tokenize': ['<|endoftext|>', '<|pad|>', '<sep>', ' left', 'WORD', '<|fim|>', '<|begin_of_text|>',
                 '<|end_of_text|>', '<|start_of_role|>', '<|end_of_role|>', '<|eot_id|>', '<|im_start|>',
                 '<tool_call>', '<unk>', '<s>', '</s>', '<|eot|>', "'s", "'ll", ' the', '\u2581', '\r\n',
                 '\u00e9', '\U0001f600', '\xff'],
}
QUOTED = ('openai', 'chat', 'model_config', 'adapter_config', 'safetensors', 'intrinsics_parse')
os.makedirs(os.path.join(ROOT, 'fuzz', 'dict'), exist_ok=True)
for t, keys in KEYS.items():
    with open(os.path.join(ROOT, 'fuzz', 'dict', t + '.dict'), 'w') as f:
        f.write(f'# {t}.dict: libFuzzer dictionary (written by fuzz/make_seeds.py)\n')
        toks = (JSON if t not in ('rpc', 'cluster_cfg') else []) + [f'"{k}"' if t in QUOTED else k for k in keys]
        for i, k in enumerate(toks):
            f.write(f'k{i}={dict_escape(k)}\n')
print('seeds written to', OUT)
