#!/usr/bin/env bash
# Installs the contracts' npm packages (exact versions from package-lock.json, into contracts/node_modules) and
# compiles the Solidity sources offline with solcjs into contracts/out/*.json (ABI, bytecode, runtime size).
# Idempotent: npm is skipped when node_modules matches the lock file, and compiling is skipped when the sources,
# compiler script and lock file are unchanged since the last build (out/.stamp).
#   --install install the npm packages only (anvil for the tests; the committed artifacts are used as they are)
#   --check   compile into a temporary folder and fail if the committed artifacts differ (determinism / staleness)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v npm >/dev/null 2>&1 || { echo "contracts: npm is required (scripts/setup.sh installs it)" >&2; exit 1; }
installed_ok() {
  node -e '
    const want = require("./package.json").dependencies;
    for (const [name, version] of Object.entries(want)) {
      let got; try { got = require("./node_modules/" + name + "/package.json").version; } catch { process.exit(1); }
      if (got !== version) process.exit(1);
    }' 2>/dev/null && [ -n "$(ls node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null)" ]
}
installed_ok || npm ci --no-audit --no-fund --loglevel=error
# npm leaves out anvil's platform package under Node < 20 (its engines field), though the binary needs no Node: with
# Debian 12's own Node 18, install that package anyway, at the lock file's version.
if [ -z "$(ls node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null)" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) plat=linux-amd64 ;; Linux-aarch64) plat=linux-arm64 ;; Darwin-arm64) plat=darwin-arm64 ;; Darwin-x86_64) plat=darwin-amd64 ;; *) plat="" ;;
  esac
  version="$(node -p 'require("./node_modules/@foundry-rs/anvil/package.json").version' 2>/dev/null || true)"
  if [ -n "$plat" ] && [ -n "$version" ]; then
    echo "contracts: npm skipped @foundry-rs/anvil-$plat (Node $(node --version) < 20); installing it anyway" >&2
    npm install --no-save --force --no-audit --no-fund --loglevel=error "@foundry-rs/anvil-$plat@$version"
  fi
fi
[ "${1:-}" = "--install" ] && exit 0
stamp=$(cat package-lock.json compile.mjs src/*.sol test/*.sol | sha256sum | cut -d' ' -f1)
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cp -r package.json package-lock.json compile.mjs src test "$tmp"/ && ln -s "$PWD/node_modules" "$tmp/node_modules"
  node "$tmp/compile.mjs" >/dev/null
  diff -r -x .stamp "$tmp/out" out && echo "contracts: artifacts are up to date"
  exit
fi
if [ -f out/.stamp ] && [ "$(cat out/.stamp)" = "$stamp" ]; then exit 0; fi
node compile.mjs
echo "$stamp" > out/.stamp
