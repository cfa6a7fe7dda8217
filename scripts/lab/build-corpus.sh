#!/usr/bin/env bash
# Builds the evaluation lab's English corpus from Debian packages (see docs/data.md):
#   1. installs the packages that ship the text (apt-get; needs root or sudo), skipping those already installed;
#   2. runs `oml data corpus`, which extracts, cleans, deduplicates and splits them into DEST
#      (train.txt, heldout.txt, lexicon.jsonl, quotations.jsonl, manifest.json).
# Idempotent: a second run installs nothing and rewrites byte-identical files.
#   scripts/lab/build-corpus.sh [DEST] [-- extra `oml data corpus` options, e.g. --max-mb 50]
# DEST defaults to artifacts/lab/corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dest="artifacts/lab/corpus"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then dest="$1"; shift; fi
[ "${1:-}" = "--" ] && shift

packages=(dict-gcide dict-wn dict-devil fortunes fortunes-min debian-reference-en gnu-standards python3.11-doc
          dict-foldoc dict-jargon dict-vera postgresql-doc-15 git-doc debian-policy developers-reference debian-handbook sqlite3-doc
          linux-doc-6.1 rust-doc openjdk-17-doc qtbase5-doc-html python-django-doc python-scipy-doc nodejs-doc cmake-doc
          erlang-doc sphinx-doc octave-doc abs-guide libboost1.81-doc python-sklearn-doc python-astropy-doc lilypond-doc-html
          gnucash-docs pacemaker-doc python-sympy-doc twisted-doc python-sqlalchemy-doc anarchism installation-guide-amd64
          cppreference-doc-en-html maxima-doc gnuplot-doc gimp-help-en racket-doc python-pandas-doc kicad-doc-en perl-doc
          vim-runtime)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "build-corpus: need root to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "build-corpus: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # dict-* packages pull in the dictd server; --no-install-recommends keeps the rest out.
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

oml=(dotnet run --project src/Oml.Cli -c Release --)
if [ -x src/Oml.Cli/bin/Release/net10.0/oml ]; then
  # Rebuild only when sources changed (cheap no-op otherwise).
  dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
  oml=(src/Oml.Cli/bin/Release/net10.0/oml)
fi
"${oml[@]}" data corpus --out "$dest" "$@"
