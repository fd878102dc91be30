# shellcheck shell=bash
# Installs what herd's scripts need, when it is missing. Sourced by scripts/test and scripts/dev.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root for: $*" >&2; return 1
  fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install $* here (no apt-get); install it by hand" >&2
    return 1
  fi
  if [ -z "${HERD_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    HERD_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_nats_server() {
  if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then return 0; fi
  echo "installing nats-server (Debian package)..." >&2
  apt_install nats-server
}

ensure_python_msgpack() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3..." >&2
    apt_install python3 python3-pip
  fi
  if python3 -c 'import msgpack' 2>/dev/null; then return 0; fi
  echo "installing Python's msgpack..." >&2
  python3 -m pip install -q msgpack 2>/dev/null \
    || python3 -m pip install -q --user msgpack 2>/dev/null \
    || apt_install python3-msgpack
  python3 -c 'import msgpack'
}

# nats-py: the results tests read an object of the herd-results bucket with it, as any
# NATS client would (PyPI only; Debian has no package of it).
ensure_python_nats() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3..." >&2
    apt_install python3 python3-pip
  fi
  if python3 -c 'import nats' 2>/dev/null; then return 0; fi
  echo "installing Python's nats-py..." >&2
  python3 -m pip install -q nats-py 2>/dev/null \
    || python3 -m pip install -q --user nats-py 2>/dev/null \
    || python3 -m pip install -q --break-system-packages nats-py
  python3 -c 'import nats'
}

ensure_rust_components() {
  if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
  fi
}

ensure_busybox_static() {
  if [ -x /bin/busybox ] && file_is_static /bin/busybox; then return 0; fi
  echo "installing busybox-static (Debian package, for the Docker test image)..." >&2
  apt_install busybox-static
}

# True when $1 is a statically linked executable (no ELF interpreter).
file_is_static() {
  ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

ensure_systemd_analyze() {
  if command -v systemd-analyze >/dev/null 2>&1; then return 0; fi
  echo "installing systemd (Debian package, for systemd-analyze verify of the unit)..." >&2
  apt_install systemd
}

# stress-ng, fio and sysbench: real benchmark tools the workload tests run as a user would.
ensure_bench_tools() {
  local missing=()
  for t in stress-ng fio sysbench; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (Debian packages, for the workload tests)..." >&2
  apt_install "${missing[@]}"
}

# The VM lane (scripts/vm-test): QEMU to boot the VMs, debootstrap to make their Debian root,
# mkfs.ext4 (e2fsprogs) for their disk images.
ensure_vm_tools() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (Debian packages, for the VM lane)..." >&2
  apt_install "${missing[@]}"
}

# Chromium: the dashboard tests drive a real headless browser through its DevTools protocol.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  echo "installing chromium (Debian package)..." >&2
  apt_install chromium fonts-dejavu-core
}

# docker-compose (Debian's, v1): deploy/cluster/ and the cluster tests bring up their topology
# with it.
ensure_docker_compose() {
  if command -v docker-compose >/dev/null 2>&1; then return 0; fi
  echo "installing docker-compose (Debian package, for deploy/cluster and its tests)..." >&2
  apt_install docker-compose
}
