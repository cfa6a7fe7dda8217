#!/usr/bin/env bash
# Set up, build, and run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/fetch-tokenizers.sh
exec dotnet test Oml.sln -c Release --no-build -nologo "$@"
