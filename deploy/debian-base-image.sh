#!/usr/bin/env bash
# Make the local docker image debian:12-slim available: keep it, else pull it, else build it with debootstrap + docker import.
set -euo pipefail

IMAGE="debian:12-slim"
SUITE="bookworm"
PULL_TIMEOUT="${PULL_TIMEOUT:-60}"          # seconds allowed for `docker pull`
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"          # override the mirror read from apt's config

log() { printf 'debian-base-image: %s\n' "$*" >&2; }
die() { local rc="$1"; shift; log "ERROR: $*"; exit "$rc"; }

start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

# --- docker daemon reachable? (exit 77 = "skipped" for test harnesses) ------
command -v docker >/dev/null 2>&1 || { log "no docker client installed (apt-get install docker.io); skipping"; exit 77; }
if ! timeout 20 docker info >/dev/null 2>&1; then
    log "no docker daemon reachable (start it, e.g. 'dockerd >/tmp/dockerd.log 2>&1 &'); skipping"
    exit 77
fi

# --- 1. already there? ------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already present ($(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c1-19)); nothing to do"
    exit 0
fi

# Serialise concurrent runs (the second one re-checks after the first is done).
if command -v flock >/dev/null 2>&1 && [ -z "${_DEBIAN_BASE_IMAGE_LOCKED:-}" ]; then
    export _DEBIAN_BASE_IMAGE_LOCKED=1
    exec flock "${TMPDIR:-/tmp}/debian-base-image.lock" "$0" "$@"
fi

# --- 2. pull ----------------------------------------------------------------
log "$IMAGE not present; trying 'docker pull $IMAGE' (timeout ${PULL_TIMEOUT}s)"
if timeout "$PULL_TIMEOUT" docker pull -q "$IMAGE" >/dev/null 2>&1; then
    log "pulled $IMAGE in $(elapsed)"
    exit 0
fi
log "pull failed (no registry access?); building $IMAGE with debootstrap"

# --- 3. debootstrap + docker import -------------------------------------------
[ "$(id -u)" -eq 0 ] || die 1 "building with debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die 1 "debootstrap not installed (apt-get install -y debootstrap)"

# Find the machine's Debian mirrors in apt's config (one-line .list and deb822 .sources).
# Prints "suite uri" lines for 'deb' entries.
apt_entries() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                 i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 print $(i+1), $i
             }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk 'function flush() { if (deb && enabled && uris != "") { n = split(suites, s, " "); m = split(uris, u, " ");
                                     for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print s[a], u[b] }
                                 deb = 0; enabled = 1; uris = ""; suites = "" }
             BEGIN { enabled = 1 }
             /^[ \t]*$/ { flush(); next }
             /^#/ { next }
             tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
             tolower($1) == "uris:"   { $1 = ""; uris = $0 }
             tolower($1) == "suites:" { $1 = ""; suites = $0 }
             tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
             END { flush() }' "$f"
    done
}
entries=$(apt_entries 2>/dev/null || true)
if [ -z "$DEBIAN_MIRROR" ]; then
    DEBIAN_MIRROR=$(awk -v s="$SUITE" '$1 == s { print $2; exit }' <<<"$entries")
fi
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR=$(awk -v s="$SUITE-security" '$1 == s { print $2; exit }' <<<"$entries")
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
log "mirror: $DEBIAN_MIRROR (security: $SECURITY_MIRROR)"

workdir=$(mktemp -d "${TMPDIR:-/var/tmp}/debian-base-image.XXXXXX")
rootfs="$workdir/rootfs"
cleanup() {
    # debootstrap may leave /proc, /sys, /dev mounted inside the target if interrupted
    local m
    awk -v r="$workdir" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE (this takes a few minutes)"
if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2 || true
    tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die 1 "debootstrap failed"
fi

# Make it look like the official slim image: apt sources incl. updates/security,
# docker-style apt/dpkg settings, no docs/man pages/caches, no host identity files.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/{info,man}/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs/debootstrap"
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: >"$rootfs/etc/resolv.conf"
echo localhost >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/machine-id" && : >"$rootfs/etc/machine-id"

log "importing rootfs ($(du -sh --one-file-system "$rootfs" | cut -f1)) as $IMAGE"
id=$(tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase $SUITE $DEBIAN_MIRROR" - "$IMAGE")
docker run --rm "$IMAGE" cat /etc/debian_version >/dev/null || die 1 "imported $IMAGE does not run"
log "built $IMAGE (${id:7:12}, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0fMB", $1/1e6}')) with debootstrap+import in $(elapsed)"
