#!/usr/bin/env bash
# Stages issue 13's tracing on real copies at 100M (scripts/gpu/issue13c/drive.sh) into DEST/.gpu/t (DEST: the checkout
# the device tool ships):
#   scripts/gpu/issue13c/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's (the device command: bash .gpu/t/call.sh 560, carry [".gpu/t"]); the
# repository's own scripts/lab/trace-real-copies.sh runs from the shipped checkout.
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../stage-session.sh" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" t "${1:?DEST}" "${2:?LAB_DATA}"
