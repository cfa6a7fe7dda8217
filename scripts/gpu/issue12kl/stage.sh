#!/usr/bin/env bash
# Stages the KL session of issue 12 into DEST/.gpu/kl (DEST: the checkout the device tool ships):
#   scripts/gpu/issue12kl/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's (what it stages, and the device command: bash .gpu/kl/call.sh 560).
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../stage-session.sh" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" kl "${1:?DEST}" "${2:?LAB_DATA}"
