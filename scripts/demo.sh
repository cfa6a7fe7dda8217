#!/usr/bin/env bash
# The main job: set up, build, and run the end-to-end demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec dotnet run -c Release --no-build --project src/Oml.Cli -- demo "$@"
