#!/usr/bin/env bash
# deploy_test.sh: consistency of the deployment files (deploy/compose, deploy/k8s) without Docker or a
# cluster: the YAML parses; the container config loads with the real loader (`alora up --check`) and
# the k8s ConfigMap embeds the same file; every command names a binary the build produces or the
# entry script; worker pools match the config's intrinsics and replicas; sockets, ports, mounts,
# probes and the /dev/shm size line up; `alora-entry prep` makes everything the config points at (and
# the config passes `up --check` against it), `alora-entry worker` gives concurrent replicas of one
# pool distinct replica slots; the images build offline from debian:12-slim with the legacy builder
# (no BuildKit syntax) and the root .dockerignore keeps build trees out of the context.
# The slow end-to-end run in Docker is tests/deploy/compose_test.sh (`make test-deploy`; it skips in
# `make test` unless ALORA_TEST_DEPLOY=1).
set -u
BIN=${ALORA_BIN:-build/alora}
if [ ! -x "$BIN" ]; then
  echo "skip: $BIN not built"
  exit 77
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "skip: python3 with PyYAML (Debian: python3-yaml, scripts/deps.sh) is not installed"
  exit 77
fi
BIN_DIR=$(cd "$(dirname "$BIN")" && pwd)
BIN=$BIN_DIR/$(basename "$BIN")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/alora-deploy-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

CFG=deploy/compose/cluster.cfg
ENTRY=deploy/compose/alora-entry.sh
for f in $CFG $ENTRY deploy/compose/docker-compose.yml deploy/compose/Dockerfile.cpu deploy/compose/Dockerfile.cuda \
         deploy/k8s/kustomization.yaml docs/deploy.md; do
  if [ -f "$f" ]; then ok "exists $f"; else bad "missing $f"; fi
done

# The real config loader, on the compose config, on the ConfigMap's copy, and on a broken config.
if "$BIN" up -c "$CFG" --check --bin-dir "$BIN_DIR" >"$TMP/plan.txt" 2>"$TMP/plan.err"; then
  ok "alora up --check $CFG"
else
  bad "alora up --check $CFG: $(cat "$TMP/plan.err")"
fi
# (the model and adapters live in the container's /models volume: --check says it cannot see them here)
grep "warning" "$TMP/plan.err" | grep -v "does not exist here: not checked" | grep -q . &&
  bad "--check warns: $(cat "$TMP/plan.err")"
python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open("deploy/k8s/configmap.yaml"))["data"]["cluster.cfg"])' \
  >"$TMP/configmap.cfg" || bad "configmap.yaml: no data.cluster.cfg"
if "$BIN" up -c "$TMP/configmap.cfg" --check --bin-dir "$BIN_DIR" >/dev/null 2>"$TMP/cm.err"; then
  ok "alora up --check on the ConfigMap's cluster.cfg"
else
  bad "ConfigMap's cluster.cfg: $(cat "$TMP/cm.err")"
fi
if cmp -s "$TMP/configmap.cfg" "$CFG"; then ok "ConfigMap cluster.cfg == $CFG"; else bad "ConfigMap cluster.cfg differs from $CFG"; fi
sed 's/replicas = 2;/replicas = 0;/' "$CFG" >"$TMP/broken.cfg"
"$BIN" up -c "$TMP/broken.cfg" --check >/dev/null 2>&1
rc=$?
if [ $rc -eq 78 ]; then ok "--check rejects replicas = 0 (exit 78, a configuration error)"; else bad "--check on a broken config: exit $rc, want 78"; fi
"$BIN" up -c deploy/local.cfg --check --bin-dir "$BIN_DIR" >/dev/null 2>&1 && ok "--check deploy/local.cfg" ||
  bad "--check deploy/local.cfg"

# The entry script: syntax, model prep (what the model-prep service / init container runs).
sh -n "$ENTRY" && ok "sh -n $ENTRY" || bad "sh -n $ENTRY"
if PATH="$BIN_DIR:$PATH" sh "$ENTRY" prep "$TMP/models" >"$TMP/prep.log" 2>&1; then
  ok "alora-entry prep"
else
  bad "alora-entry prep: $(tail -5 "$TMP/prep.log")"
fi
# The same config pointed at what prep made: no path left unchecked, no warning (the image build runs
# this check too, deploy/compose/Dockerfile.cpu).
sed "s#\"/models/#\"$TMP/models/#" "$CFG" >"$TMP/prepped.cfg"
if "$BIN" up -c "$TMP/prepped.cfg" --check --bin-dir "$BIN_DIR" >/dev/null 2>"$TMP/prepped.err" &&
   ! grep -q "warning" "$TMP/prepped.err"; then
  ok "alora up --check $CFG against the prepped models: no warning"
else
  bad "--check against the prepped models: $(cat "$TMP/prepped.err")"
fi

# Replica slots: two workers of one pool started at once get replicas 0 and 1, another pool gets 0.
if command -v flock >/dev/null; then
  mkdir -p "$TMP/fake" "$TMP/run"
  printf '#!/bin/sh\necho "$*" >>"%s/run/started"\nsleep 2\n' "$TMP" >"$TMP/fake/alora-worker"
  chmod +x "$TMP/fake/alora-worker"
  for n in certainty certainty answerability; do
    PATH="$TMP/fake:$PATH" ALORA_RUN_DIR="$TMP/run" sh "$ENTRY" worker /etc/alora/cluster.cfg "$n" >/dev/null 2>&1 &
  done
  wait
  got=$(sort "$TMP/run/started" 2>/dev/null | tr '\n' ';')
  want="-c /etc/alora/cluster.cfg --intrinsic answerability --replica 0;-c /etc/alora/cluster.cfg --intrinsic certainty --replica 0;-c /etc/alora/cluster.cfg --intrinsic certainty --replica 1;"
  if [ "$got" = "$want" ]; then ok "alora-entry worker: distinct replica slots"; else bad "replica slots: got '$got'"; fi
else
  echo "skip replica-slot check: no flock"
fi

# The cross-checks.
python3 - "$TMP/plan.txt" "$BIN_DIR" "$TMP/models" <<'PY' || fail=1
import os, re, sys, yaml

plan_path, bin_dir, models_dir = sys.argv[1:4]
fails = 0
def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails += 1
    return cond

# ---- the plan printed by `alora up --check`
plan, intr, workers = {}, {}, []
for line in open(plan_path):
    line = line.rstrip("\n")
    m = re.match(r"intrinsic (\S+) adapter=(\S+) replicas=(\d+)$", line)
    if m:
        intr[m[1]] = {"adapter": m[2], "replicas": int(m[3])}
        continue
    m = re.match(r"exec worker (\S+)-(\d+) (\S+): ", line)
    if m:
        workers.append((m[1], int(m[2]), m[3]))
        continue
    m = re.match(r"([a-z_.]+) = (.*)$", line)
    if m:
        plan[m[1]] = m[2]
run_dir = plan.get("run_dir", "")
check(bool(intr) and bool(run_dir), "plan has run_dir and intrinsics")
for key in ("base.listen", "router.listen"):
    check(plan.get(key, "").startswith("ipc://" + run_dir + "/"), f"{key} is an ipc socket in run_dir ({plan.get(key)})")
for name, k, url in workers:
    check(url == f"ipc://{run_dir}/worker-{name}-{k}.ipc", f"worker {name}-{k} URL in run_dir")
http = plan.get("router.http", "")
m = re.match(r"http://([^:/]+):(\d+)$", http)
check(m is not None, f"router.http is http://HOST:PORT ({http})")
http_port = int(m[2]) if m else -1
loopback = m and (m[1] == "localhost" or m[1].startswith("127."))
check(loopback or plan.get("router.allow_insecure") == "true" or plan.get("router.api_keys", "0") != "0",
      "router.http off loopback has api_keys or allow_insecure (else the router refuses to start)")
produced = {f for f in os.listdir(bin_dir) if f.startswith("alora") and os.access(os.path.join(bin_dir, f), os.X_OK)}
for b in ("alora", "alora-base", "alora-worker", "alora-router"):
    check(b in produced, f"the build produces {b}")
commands = produced | {"alora-entry"}

# ---- prep output: what the config points at, and the arena size
MODELS = "/models"
def local(p):
    return models_dir + p[len(MODELS):] if p.startswith(MODELS + "/") else None
model = local(plan.get("base.model", ""))
check(model is not None and os.path.isfile(os.path.join(model, "config.json")),
      f"prep made base.model {plan.get('base.model')}")
for name, v in intr.items():
    a = local(v["adapter"])
    check(a is not None and os.path.isfile(os.path.join(a, "adapter_config.json")), f"prep made adapter {v['adapter']}")
need = None
if model and os.path.isfile(os.path.join(model, "config.json")):
    import json
    mc = json.load(open(os.path.join(model, "config.json")))
    check(mc.get("torch_dtype") == "float32", "demo model is f32 (arena bytes = tensor bytes)")
    weights = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
    hd = mc.get("head_dim") or mc["hidden_size"] // mc["num_attention_heads"]
    block = 2 * mc["num_hidden_layers"] * mc["num_key_value_heads"] * hd * int(plan["base.block_size"]) * 4
    need = weights + 4096 + block * int(plan["base.kv_blocks"]) + (4 << 20)  # + manifest, tables (bounded)
    print(f"     arenas need ~{need / 2**30:.2f} GiB (weights {weights / 2**20:.0f} MiB, {plan['base.kv_blocks']} "
          f"KV blocks x {block / 2**20:.3f} MiB)")

def size(s):
    """docker sizes (2gb, 512m) and k8s quantities (2Gi, 2560Mi, 3G) in bytes"""
    s = str(s).strip()
    m = re.match(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)([bB]?)$", s)
    if not m:
        raise ValueError(s)
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m[2].lower()]
    if m[2] and not m[3] and not m[4] and m[2].isupper():  # k8s decimal suffix: 2G
        mult = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m[2]]
    return int(float(m[1]) * mult)

# ---- compose
cdir = "deploy/compose"
dc = yaml.safe_load(open(f"{cdir}/docker-compose.yml"))
svcs = dc["services"]
check("base" in svcs and "router" in svcs, "compose: base and router services")
def cmd_of(svc):
    c = svc.get("command")
    return c if isinstance(c, list) else (c.split() if c else [])
cfg_in = None
for sname, s in svcs.items():
    c = cmd_of(s)
    check(bool(c) and c[0] in commands, f"compose {sname}: command {c[:1]} is a built binary or alora-entry")
    for v in s.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith("."):
            check(os.path.exists(os.path.normpath(os.path.join(cdir, src))), f"compose {sname}: mount source {src} exists")
            if src.endswith("cluster.cfg"):
                check(os.path.samefile(os.path.join(cdir, src), f"{cdir}/cluster.cfg"), f"compose {sname}: mounts cluster.cfg")
                cfg_in = dst
        elif not src.startswith("/"):
            check(src in (dc.get("volumes") or {}), f"compose {sname}: named volume {src} is declared")
    if "build" in s:
        b = s["build"]
        check(os.path.isfile(os.path.join(cdir, b["context"], b["dockerfile"])), f"compose {sname}: dockerfile exists")
check(cfg_in is not None, "compose: cluster.cfg is mounted")
def mounts(s):
    return {v.split(":")[1]: v.split(":")[0] for v in s.get("volumes", [])}
def cfg_arg(c):
    if c[0] == "alora-entry":
        return c[2] if len(c) > 2 else None
    return c[c.index("-c") + 1] if "-c" in c else None
pools = {}
for sname, s in svcs.items():
    c = cmd_of(s)
    if sname != "model-prep":
        check(cfg_arg(c) == cfg_in and mounts(s).get(cfg_in, "").endswith("cluster.cfg"),
              f"compose {sname}: -c names the mounted config")
        check(mounts(s).get(run_dir) == "run", f"compose {sname}: the shared run volume at run_dir {run_dir}")
        check(mounts(s).get(MODELS) == "models", f"compose {sname}: the models volume at {MODELS}")
    if c[:2] == ["alora-entry", "worker"]:
        name = c[3]
        pools[name] = pools.get(name, 0) + int((s.get("deploy") or {}).get("replicas", 1))
        check(mounts(s).get("/dev/shm") == "shm" and "ipc" not in s,
              f"compose {sname}: the base's /dev/shm (the shm volume, not ipc: service:base)")
        check(len(c) == 4, f"compose {sname}: no fixed replica (slots, so --scale works)")
    if c[:1] == ["alora-worker"]:
        check(False, f"compose {sname}: call alora-worker through alora-entry (replica slots)")
check(pools == {n: v["replicas"] for n, v in intr.items()},
      f"compose: one worker pool per intrinsic with the config's replicas ({pools})")
base = svcs["base"]
check(cmd_of(base)[:2] == ["alora-entry", "base"], "compose base: alora-entry base")
check(mounts(base).get("/dev/shm") == "shm", "compose base: the shm volume at /dev/shm")
# /dev/shm is one tmpfs volume shared by base and workers: a restarted base does not strand the
# workers (tests/deploy/compose_test.sh kills and stops the base).
shm = (dc.get("volumes") or {}).get("shm") or {}
shm_o = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in str((shm.get("driver_opts") or {}).get("o", "")).split(","))
check((shm.get("driver_opts") or {}).get("type") == "tmpfs", "compose: the shm volume is a tmpfs")
check(shm_o.get("mode") == "1777", "compose: the shm tmpfs is mode 1777 (the arenas belong to uid 10001)")
if need:
    check(size(shm_o.get("size", "0")) >= need, f"compose: the shm tmpfs (size={shm_o.get('size')}) holds the arenas")
for sname, s in svcs.items():
    if sname != "model-prep":
        check(s.get("restart") in ("unless-stopped", "always"), f"compose {sname}: restarted when it exits ({s.get('restart')})")
prep = svcs.get("model-prep")
check(prep is not None and cmd_of(prep)[:2] == ["alora-entry", "prep"] and mounts(prep).get(MODELS) == "models",
      "compose model-prep: alora-entry prep into the models volume")
ports = svcs["router"].get("ports", [])
check(any(str(p).split(":")[-1] == str(http_port) for p in ports), f"compose router: publishes router.http port {http_port}")
hc = " ".join(svcs["router"].get("healthcheck", {}).get("test", []))
check(f":{http_port}/healthz" in hc, "compose router: healthcheck on /healthz")
check(run_dir in " ".join(base.get("healthcheck", {}).get("test", [])), "compose base: healthcheck on its socket")

# ---- Dockerfiles
for df in ("Dockerfile.cpu", "Dockerfile.cuda"):
    text = open(f"{cdir}/{df}").read()
    # BuildKit prefers <Dockerfile>.dockerignore to the root one; the legacy builder and compose v1
    # read only the root one: one file, or copies of it
    if os.path.exists(f"{cdir}/{df}.dockerignore"):
        check(open(f"{cdir}/{df}.dockerignore").read() == open(".dockerignore").read(),
              f"{df}.dockerignore == .dockerignore")
    # the legacy builder and offline BuildKit: no frontend image to pull, no BuildKit-only syntax
    check(not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), f"{df}: no '# syntax=' line (BuildKit would pull a frontend)")
    check(not re.search(r"^RUN\s+--(mount|network|security)", text, re.M), f"{df}: no RUN --mount (legacy builder)")
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    nat = re.search(r"^ARG\s+ALORA_NATIVE(?:=(\S*))?\s*$", code, re.M)
    check("-march=native" not in code and "ALORA_NATIVE=ON" not in code and (nat is None or nat[1] in (None, "OFF")),
          f"{df}: portable by default (no -march=native, ALORA_NATIVE default OFF)")
    for m in re.finditer(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in m[1].split()[:-1]:
            check(os.path.exists(src), f"{df}: COPY source {src} exists")
    m = re.search(r"^COPY --from=build (.+) /usr/local/bin/$", text, re.M)
    copied = {os.path.basename(p) for p in m[1].split()} if m else set()
    check(copied == {"alora", "alora-base", "alora-worker", "alora-router"} and copied <= produced,
          f"{df}: copies the four built binaries")
    check(f"COPY deploy/compose/alora-entry.sh /usr/local/bin/alora-entry" in text, f"{df}: installs alora-entry")
    check(f"COPY deploy/tokenizer {plan.get('router.tokenizer')}" in text, f"{df}: router.tokenizer is in the image")
    check(f"ALORA_RUN_DIR={run_dir}" in text, f"{df}: ALORA_RUN_DIR = run_dir")
    check("scripts/deps.sh" in text and "USER 10001" in text, f"{df}: deps.sh, non-root user")
    check(f"mkdir -p {run_dir} {MODELS}" in text, f"{df}: creates run_dir and {MODELS} (volume ownership)")
cpu, cuda = open(f"{cdir}/Dockerfile.cpu").read(), open(f"{cdir}/Dockerfile.cuda").read()
check("-DENABLE_CUDA=OFF" in cpu and "debian:12" in cpu, "Dockerfile.cpu: Debian 12, -DENABLE_CUDA=OFF")
# every stage from debian:12-slim (offline, deploy/debian-base-image.sh can make exactly that one)
args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", cpu, re.M))
froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), f) for f in re.findall(r"^FROM\s+(\S+)", cpu, re.M)]
check(len(froms) >= 2 and all(f == "debian:12-slim" for f in froms), f"Dockerfile.cpu: every stage FROM debian:12-slim ({froms})")

# ---- .dockerignore: the context is the repository root; Docker's rules (a pattern excludes the
# paths it matches and everything under them; ** spans directories; !pattern re-includes; last wins)
def ign_re(p):
    p = p.strip().lstrip("/")
    if p.startswith("./"):
        p = p[2:]
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out += "(?:.*/)?"; i += 3
        elif p.startswith("**", i):
            out += ".*"; i += 2
        elif p[i] == "*":
            out += "[^/]*"; i += 1
        elif p[i] == "?":
            out += "[^/]"; i += 1
        else:
            out += re.escape(p[i]); i += 1
    return re.compile(out + "(?:/.*)?$")
ign = []
if check(os.path.isfile(".dockerignore"), ".dockerignore at the repository root (the build context)"):
    for line in open(".dockerignore"):
        line = line.strip()
        if line and not line.startswith("#"):
            ign.append((line.startswith("!"), ign_re(line.lstrip("!"))))
def ignored(path):
    r = False
    for neg, rx in ign:
        if rx.match(path):
            r = not neg
    return r
for p in ("build/CMakeCache.txt", "build-asan/alora", ".git/HEAD", ".venv/bin/python", ".venv-x/lib/a.py",
          "build/run/model/model.safetensors", "tests/fixtures/oracle/x.safetensors"):
    check(ignored(p), f".dockerignore excludes {p}")
needed = ["CMakeLists.txt", "scripts/deps.sh", "cmake/Layers.cmake", "proto/alora.proto", "tools/alora.c",
          "common/err.c", "engine/forward.c", "kernels/cpu/ops_cpu.c", "services/base/main.c"]
for df in ("Dockerfile.cpu", "Dockerfile.cuda"):
    for m in re.finditer(r"^COPY (?!--from)(.+)$", open(f"{cdir}/{df}").read(), re.M):
        needed += [s for s in m[1].split()[:-1] if s != "."]
for p in sorted(set(needed)):
    check(not ignored(p), f".dockerignore keeps {p} (the image build needs it)")
check("-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH}" in cuda and "ARG CUDA_ARCH=90" in cuda and
      "-devel-" in cuda and "-runtime-" in cuda, "Dockerfile.cuda: devel -> runtime, arch 90")

# ---- Kubernetes
kdir = "deploy/k8s"
kust = yaml.safe_load(open(f"{kdir}/kustomization.yaml"))
docs = {}
for r in kust["resources"]:
    check(os.path.isfile(f"{kdir}/{r}"), f"k8s: resource {r} exists")
    for d in yaml.safe_load_all(open(f"{kdir}/{r}")):
        if d:
            docs[(d["kind"], d["metadata"]["name"])] = d
listed = {f for f in os.listdir(kdir) if f.endswith(".yaml") and f != "kustomization.yaml"}
check(listed == set(kust["resources"]), "k8s: kustomization lists every manifest")
ns = [n for (k, n) in docs if k == "Namespace"]
check(len(ns) == 1, "k8s: one Namespace")
for (k, n), d in docs.items():
    if k != "Namespace":
        check(d["metadata"].get("namespace") == ns[0], f"k8s {k}/{n}: in namespace {ns[0]}")
cm = [d for (k, _), d in docs.items() if k == "ConfigMap"][0]
dep = [d for (k, _), d in docs.items() if k == "Deployment"]
check(len(dep) == 1, "k8s: one Deployment (the cell)")
pod = dep[0]["spec"]["template"]["spec"]
check(dep[0]["spec"]["selector"]["matchLabels"].items() <= dep[0]["spec"]["template"]["metadata"]["labels"].items(),
      "k8s: selector matches the pod labels")
check(not pod.get("hostIPC") and not pod.get("shareProcessNamespace"), "k8s: no hostIPC, no shareProcessNamespace")
vols = {v["name"]: v for v in pod["volumes"]}
def vol_at(c, path):
    for m in c.get("volumeMounts", []):
        if m["mountPath"] == path:
            return vols.get(m["name"])
    return None
ctrs = pod["containers"]
kpools, seen = {}, set()
for c in ctrs:
    cmd = c.get("command", [])
    n = c["name"]
    check(bool(cmd) and cmd[0] in commands, f"k8s {n}: command {cmd[:1]} is a built binary or alora-entry")
    cv = vol_at(c, "/etc/alora")
    check(cv is not None and cv.get("configMap", {}).get("name") == cm["metadata"]["name"] and
          cfg_arg(cmd) == "/etc/alora/cluster.cfg" and "cluster.cfg" in cm["data"], f"k8s {n}: -c the ConfigMap's cluster.cfg")
    rv = vol_at(c, run_dir)
    check(rv is not None and "emptyDir" in rv, f"k8s {n}: shared emptyDir at run_dir {run_dir}")
    sv = vol_at(c, "/dev/shm")
    check(sv is not None and sv.get("emptyDir", {}).get("medium") == "Memory", f"k8s {n}: memory emptyDir at /dev/shm")
    mv = vol_at(c, MODELS)
    check(mv is not None and "persistentVolumeClaim" in mv, f"k8s {n}: models PVC at {MODELS}")
    check("resources" in c and "requests" in c["resources"], f"k8s {n}: resource requests")
    check("livenessProbe" in c, f"k8s {n}: liveness probe")
    if cmd[:2] == ["alora-entry", "worker"]:
        check(len(cmd) == 5, f"k8s {n}: fixed replica index")
        name, k = cmd[3], int(cmd[4])
        check((name, k) not in seen, f"k8s {n}: replica {name}-{k} is unique")
        seen.add((name, k))
        kpools[name] = kpools.get(name, 0) + 1
        sock = f"{run_dir}/worker-{name}-{k}.ipc"
        check(sock in " ".join(c["livenessProbe"]["exec"]["command"]), f"k8s {n}: probe on its socket {sock}")
    if cmd[:2] == ["alora-entry", "base"]:
        sock = plan["base.listen"][len("ipc://"):]
        check(sock in " ".join(c["livenessProbe"]["exec"]["command"]), f"k8s {n}: probe on {sock}")
        if need:
            check(size(c["resources"]["limits"]["memory"]) >= need, f"k8s {n}: memory limit holds the shm it writes")
check(kpools == {n: v["replicas"] for n, v in intr.items()}, f"k8s: worker containers match the config ({kpools})")
check(all(k < intr[n]["replicas"] for n, k in seen if n in intr), "k8s: replica indices 0..replicas-1")
if need:
    check(size(vols["shm"]["emptyDir"].get("sizeLimit", "0")) >= need, "k8s: /dev/shm sizeLimit holds the arenas")
pvc = [n for (k, n) in docs if k == "PersistentVolumeClaim"]
check(all(v["persistentVolumeClaim"]["claimName"] in pvc for v in vols.values() if "persistentVolumeClaim" in v),
      "k8s: the models PVC is defined")
router = [c for c in ctrs if c.get("command", [None])[0] == "alora-router"]
check(len(router) == 1, "k8s: the router runs in the cell (it dials the workers' ipc:// sockets)")
if router:
    r = router[0]
    ports = {p["name"]: p["containerPort"] for p in r.get("ports", [])}
    check(http_port in ports.values(), f"k8s router: containerPort {http_port} (router.http)")
    check(r.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "k8s router: readiness /healthz")
svc = [d for (k, _), d in docs.items() if k == "Service"]
check(len(svc) == 1, "k8s: one Service")
if svc and router:
    sp = svc[0]["spec"]
    check(sp["selector"].items() <= dep[0]["spec"]["template"]["metadata"]["labels"].items(), "k8s Service selects the cell")
    tp = sp["ports"][0]["targetPort"]
    check(tp in ports or tp == http_port, f"k8s Service targetPort {tp} is the router's HTTP port")
inits = pod.get("initContainers", [])
check(any(i["command"][:2] == ["alora-entry", "prep"] for i in inits), "k8s: model-prep init container")
sys.exit(1 if fails else 0)
PY

# docs/deploy.md explains the /dev/shm size
grep -q "kv_blocks" docs/deploy.md 2>/dev/null && ok "docs/deploy.md: the /dev/shm formula" || bad "docs/deploy.md: no /dev/shm formula"

if [ $fail -ne 0 ]; then
  echo "deploy_test: FAILED"
  exit 1
fi
echo "deploy_test: all ok"
