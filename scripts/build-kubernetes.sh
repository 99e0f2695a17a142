#!/usr/bin/env bash
# Real Kubernetes binaries for the tests, built from Debian's own `kubernetes` source package.
#
# No registry reachable here ships kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet or kubeadm as binaries, but Debian bookworm's `kubernetes` source package is the full
# upstream tree (Debian builds kubectl from it). This script builds all six with Debian's golang,
# exactly as debian/rules does (GOPATH mode, CGO_ENABLED=0), plus one patch (below), and the
# pod sandbox `pause` from the same tree as its Makefile does (gcc -static), and keeps only the
# binaries:
#
#   ~/.cache/hardline/kubernetes/<source version>-<recipe hash>/bin/{kube-apiserver,...,kubectl}
#
# The key is the source version apt offers (the candidate of kubernetes-client, built from the
# same source) and a hash of this file, so a new Debian upload or a changed recipe builds anew
# and an unchanged pair is reused. The 6 GB tree and Go build cache are deleted afterwards.
#
#   bash scripts/build-kubernetes.sh          # build unless cached; last line: the bin directory
#   bash scripts/build-kubernetes.sh --dir    # only print the bin directory it uses (no build)
#
# Measured on 2 cores (nice -n 10): see build.txt next to bin/ for this machine's own number.
set -euo pipefail
self=$(readlink -f "$0")
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubeadm kubectl)
PAUSE_TAG=3.4  # build/pause/Makefile of this tree
BUILD_DEPS=(golang-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync jq gcc libc6-dev)
cache_root=${HARDLINE_CACHE:-$HOME/.cache/hardline}/kubernetes

source_version() {
  # kubernetes-client is built from the `kubernetes` source; a binNMU suffix is not in the source.
  apt-cache show --no-all-versions kubernetes-client 2>/dev/null | sed -n 's/^Version: //p' | sed 's/+b[0-9]*$//' | head -n1
}

version=$(source_version)
if [ -z "$version" ]; then
  apt-get update -qq
  version=$(source_version)
fi
[ -n "$version" ] || { echo "build-kubernetes: apt knows no kubernetes-client (no Debian archive?)" >&2; exit 1; }
recipe=$(sha256sum "$self" | cut -c1-12)
out=$cache_root/$version-$recipe
bin=$out/bin

have_all() { for b in "${BINARIES[@]}" pause; do [ -x "$bin/$b" ] || return 1; done; }

if [ "${1:-}" = --dir ]; then echo "$bin"; exit 0; fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9   # two setup.sh runs at once: the second waits and then finds the cache filled
if have_all; then
  echo "==> Kubernetes $version binaries cached in $bin"
  echo "$bin"
  exit 0
fi

started=$(date +%s)
missing=()
for p in "${BUILD_DEPS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]} (to build Kubernetes)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d "$cache_root/build.XXXXXX")
log=$cache_root/build-$version-$recipe.log
trap 'rm -rf "$work"' EXIT
echo "==> building Kubernetes $version (kube-apiserver ... kubectl) in $work, log $log"

# A deb-src entry for every Debian archive the machine already uses, in a private apt state
# directory: the machine's own sources and lists stay untouched and nothing is left behind.
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(COMPONENT) $(ORIGIN)' |
  awk -v k="$keyring" '$1 == "deb" && $5 ~ /^Debian/ {print "deb-src [signed-by=" k "] " $2 " " $3 " " $4}' |
  sort -u >"$apt_dir/sources.list"
[ -s "$apt_dir/sources.list" ] || { echo "build-kubernetes: no Debian archive among apt's sources" >&2; exit 1; }
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" source -qq "kubernetes=$version" >>"$log" 2>&1) ||
  { tail -n 20 "$log" >&2; exit 1; }
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)

# The patch: vendored github.com/modern-go/reflect2 1.0.1 dereferences nil at run time under
# Go >= 1.18 (reflect2.(*frozenConfig).Type2; Debian's own kubectl 1.20 panics the same way).
# Debian's golang-github-modern-go-reflect2-dev 1.0.2 fixes it; its sources replace the vendored ones.
reflect2=$src/vendor/github.com/modern-go/reflect2
find "$reflect2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$reflect2/"
find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -name '*.s' -exec cp {} "$reflect2/" \;

# As debian/rules: GOPATH mode (hack/lib forces GO111MODULE=off), CGO off, static binaries.
mkdir -p "$src/.go/src/k8s.io" "$work/home"
ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
whats=$(printf 'cmd/%s ' "${BINARIES[@]}")
(cd "$src" && env PATH="/usr/lib/go/bin:$PATH" GOPATH="$src/.go" CGO_ENABLED=0 HOME="$work/home" \
  GOCACHE="$work/gocache" GOFLAGS= GOPROXY=off nice -n 10 make WHAT="$whats" >>"$log" 2>&1) ||
  { tail -n 40 "$log" >&2; exit 1; }

staged=$work/out
mkdir -p "$staged/bin"
for b in "${BINARIES[@]}"; do install -m 0755 "$src/_output/bin/$b" "$staged/bin/$b"; done
# The pod sandbox process the kubelet's runtime starts first in every pod (k8s.gcr.io/pause).
gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_TAG-debian" -o "$staged/bin/pause" "$src/build/pause/linux/pause.c"
"$staged/bin/kube-apiserver" --version >/dev/null  # a binary that cannot even start is no cache entry
seconds=$(( $(date +%s) - started ))
{
  echo "source: kubernetes $version (Debian), recipe $recipe"
  echo "go: $(/usr/lib/go/bin/go version)"
  echo "built: $(date -u +%FT%TZ) in ${seconds}s on $(nproc) cores"
  (cd "$staged/bin" && sha256sum "${BINARIES[@]}" pause)
} >"$staged/build.txt"
rm -rf "$out"
mv "$staged" "$out"
echo "==> Kubernetes $version built in ${seconds}s: $bin ($(du -sh "$bin" | cut -f1))"
echo "$bin"
