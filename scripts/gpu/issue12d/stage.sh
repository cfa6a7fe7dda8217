#!/usr/bin/env bash
# Stages the fifth session of issue 12 (the lead's three seeds) into DEST/.gpu/d (DEST: the checkout the device tool ships):
#   scripts/gpu/issue12d/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's (what it stages, and the device command: bash .gpu/d/call.sh 560).
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../stage-session.sh" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" d "${1:?DEST}" "${2:?LAB_DATA}"
