# free_port.sh: `free_port` prints a TCP port nobody listens on, outside the kernel's ephemeral range.
# Sourced by tests and benches. Ports are drawn below ip_local_port_range (32768 on Debian): a port
# drawn inside it can be taken between the check and our bind by any outgoing connection's local
# port (ctest -j runs many HTTP clients at once), which failed a CI run with "Address already in use".
free_port() {
  local lo=32768 p
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  [ "$lo" -gt 11000 ] 2>/dev/null || lo=32768
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if command -v ss >/dev/null; then
      ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$p\$" || { echo "$p"; return 0; }
    else
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    fi
  done
  echo "free_port: no free TCP port found below $lo" >&2
  return 1
}
