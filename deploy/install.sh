#!/usr/bin/env bash
# Installs herd on a host without dpkg: herdd and herdctl, the systemd unit, a commented
# /etc/herd/herd.toml (kept if one exists: the new one goes to herd.toml.new), shell
# completions and man pages, and enables herdd.service (not started: configure the node first).
#
#   deploy/install.sh [--bin-dir DIR] [--dist DIR] [--prefix /usr] [--root DIR] [--no-enable]
#
#   --bin-dir  where herdd, herdctl and herd-shim are [target/release]
#   --dist     completions/ and man/ as made by herd-gen [target/dist]; skipped when absent
#   --prefix   installation prefix of the binaries, completions and man pages [/usr]
#   --root     install into this directory instead of / (an image, a chroot); no systemctl
#   --no-enable  do not enable herdd.service
#
# Build first: cargo build --release -p herd-daemon -p herd-shim -p herdctl && target/release/herd-gen target/dist
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin_dir="$repo/target/release" dist="$repo/target/dist" prefix=/usr root="" enable=1

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?}"; shift 2 ;;
    --dist) dist="${2:?}"; shift 2 ;;
    --prefix) prefix="${2:?}"; shift 2 ;;
    --root) root="${2:?}"; shift 2 ;;
    --no-enable) enable=0; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done
for b in herdd herdctl herd-shim; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing (cargo build --release -p herd-daemon -p herd-shim -p herdctl)" >&2; exit 1; }
done

say() { echo "install.sh: $*"; }
put() { # mode source destination
  install -D -m "$1" "$2" "$root$3"
  say "installed $3"
}

put 755 "$bin_dir/herdd" "$prefix/bin/herdd"
put 755 "$bin_dir/herdctl" "$prefix/bin/herdctl"
put 755 "$bin_dir/herd-shim" "$prefix/bin/herd-shim"

# The unit runs the binary where it was installed.
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s#/usr/bin/herdd#$prefix/bin/herdd#g" "$here/systemd/herdd.service" > "$unit"
put 644 "$unit" /etc/systemd/system/herdd.service

if [ -e "$root/etc/herd/herd.toml" ]; then
  put 640 "$here/herd.toml" /etc/herd/herd.toml.new
  say "kept the existing /etc/herd/herd.toml; compare it with herd.toml.new"
else
  put 640 "$here/herd.toml" /etc/herd/herd.toml
fi
mkdir -p "$root/var/lib/herd" && chmod 0755 "$root/var/lib/herd"

if [ -d "$dist/completions" ]; then
  for b in herdd herdctl; do
    put 644 "$dist/completions/$b.bash" "$prefix/share/bash-completion/completions/$b"
    put 644 "$dist/completions/_$b" "$prefix/share/zsh/vendor-completions/_$b"
    put 644 "$dist/completions/$b.fish" "$prefix/share/fish/vendor_completions.d/$b.fish"
  done
else
  say "no $dist/completions: shell completions skipped (target/release/herd-gen $dist makes them)"
fi
if [ -d "$dist/man" ]; then
  for page in "$dist"/man/*.1; do
    install -D -m 644 "$page" "$root$prefix/share/man/man1/$(basename "$page")"
  done
  say "installed $(ls "$dist"/man/*.1 | wc -l) man pages in $prefix/share/man/man1"
else
  say "no $dist/man: man pages skipped"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$enable" = 1 ]; then
    systemctl enable herdd.service
  fi
  say "set node_id and [nats] in /etc/herd/herd.toml, run 'herdd doctor', then 'systemctl start herdd'"
elif [ -z "$root" ]; then
  say "systemd is not running here: start herdd yourself ($prefix/bin/herdd --config /etc/herd/herd.toml)"
fi
