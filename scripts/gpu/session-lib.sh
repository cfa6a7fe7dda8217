#!/usr/bin/env bash
# The job machinery of a staged GPU session's driver, sourced by its drive.sh (stage.sh copies this file beside it as
# lib.sh; call.sh starts the driver). A driver is idempotent: every step leaves a marker in $W/done and is skipped
# when it exists, so a fresh machine reruns only what is missing.
#   session_start                    cd to $W, make the folders, record the driver's pid, reset the device slots
#   session_setup APP SHIM NATIVE RECIPES
#                                    once per machine: unpack APP/oml-lab.tar.xz and APP/lab-data.tar.xz, install the
#                                    shim ($CPU_SHIM for a CPU rehearsal, else SHIM/liboml_torch.so when staged
#                                    prebuilt, else built from NATIVE/build.sh against the machine's libtorch), copy
#                                    RECIPES/*.yaml to lab/recipes
#   session_env                      PATH, LD_LIBRARY_PATH (the machine's libtorch), the CUDA allocator, INSTR
#   step NAME CMD...                 CMD once in a device slot (output to logs/NAME.log), marked done or failed; a
#                                    failure is retried once (a lab rerun resumes from its saved cells)
#   ok NAME / waitfor NAME           a step's marker exists / wait for it (returns 1 if the step failed)
#   lacquire / lrelease              a lab slot on top of the device slot (lab processes hold 13-33 GiB each)
#   persistence_config NAME TITLE ATTACKS MODELS [BASE]
#                                    lab/experiments/NAME.yaml: a persistence experiment over model folders embedded
#                                    by 'oml embed' on $M/BASE (default base-100m; ATTACKS, MODELS: YAML list lines)
# Environment: W (work folder), REPO (the repository copy on the machine), SLOTS, LAB_SLOTS, OMP_NUM_THREADS, CPU_SHIM.

session_start() {
  cd "$W" || exit 1
  T0=$(date +%s)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
  M=artifacts/lab/models; R=results; L=logs; D=done
  mkdir -p $M $R $L $D sets lab/experiments lab/recipes
  echo $$ > drive.pid
  # At most SLOTS device jobs at once, of which at most LAB_SLOTS lab processes: the first session ran up to 12 side
  # by side on the H200 and five lab processes ran out of its 140 GiB. A slot is a directory (mkdir is atomic).
  SLOTS="${SLOTS:-6}"; LAB_SLOTS="${LAB_SLOTS:-$SLOTS}"
  rm -rf slots lslots; mkdir -p slots lslots
}

log() { echo "$(date -u +%T) +$(( $(date +%s) - T0 ))s $*" >> "$L/timeline.txt"; }
ok() { [ -f "$D/$1" ]; }
waitfor() { while ! ok "$1"; do [ -f "$D/$1.failed" ] && return 1; sleep 2; done; }
acquire() { while :; do for i in $(seq 1 "$SLOTS"); do mkdir "slots/$i" 2>/dev/null && { SLOT=$i; return; }; done; sleep 2; done; }
lacquire() { while :; do for i in $(seq 1 "$LAB_SLOTS"); do mkdir "lslots/$i" 2>/dev/null && { LSLOT=$i; return; }; done; sleep 2; done; }
lrelease() { rmdir "lslots/$LSLOT"; }

step() {
  local name=$1; shift
  ok "$name" && return 0
  rm -f "$D/$name.failed"
  local t try
  for try in 1 2; do
    acquire
    log "start $name$( [ $try = 2 ] && echo " (retry)")"
    t=$(date +%s)
    if "$@" > "$L/$name.log" 2>&1; then rmdir "slots/$SLOT"; touch "$D/$name"; log "done $name ($(( $(date +%s) - t )) s)"; return 0; fi
    rmdir "slots/$SLOT"; cp -f "$L/$name.log" "$L/$name.try$try.log"
    log "FAILED $name, try $try ($(( $(date +%s) - t )) s)"; sleep 5
  done
  touch "$D/$name.failed"; return 1
}

session_setup() {  # APP SHIM NATIVE RECIPES (folders)
  local app=$1 shim=$2 native=$3 recipes=$4
  ok setup && return 0
  log "setup"
  [ -x lab-app/oml ] || tar -xJf "$app/oml-lab.tar.xz"
  [ -f artifacts/lab/tokenizer/tokenizer.json ] || tar -xJf "$app/lab-data.tar.xz"
  if [ -n "${CPU_SHIM:-}" ]; then cp -f "$CPU_SHIM" lab-app/liboml_torch.so
  elif [ -f "$shim/liboml_torch.so" ]; then cp -f "$shim/liboml_torch.so" lab-app/liboml_torch.so; mkdir -p native; cp -f lab-app/liboml_torch.so native/
  else [ -f native/liboml_torch.so ] || PYTHON=python3 "$native/build.sh" "$W/native" > "$L/shim.log" 2>&1; cp -f native/liboml_torch.so lab-app/liboml_torch.so; fi
  cp -f "$recipes/"*.yaml lab/recipes/
  touch "$D/setup"; log "setup done"
}

session_env() {
  export PATH="$W/lab-app:$PATH"
  if [ -z "${CPU_SHIM:-}" ]; then
    local torch_dir
    torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
    export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
  fi
  INSTR="${INSTR:-artifacts/lab/instructions/instructions-train.json}"
}

persistence_config() {  # NAME TITLE ATTACKS MODELS [BASE]
  cat > lab/experiments/$1.yaml <<EOC
# $2: models embedded by 'oml embed' (paths), measured by the lab.
version: 1
name: $1
kind: persistence
base_model: ../../$M/${5:-base-100m}
tokenizer: ../../$M/${5:-base-100m}
corpus: [../../artifacts/lab/corpus/train.txt]
heldout: [../../artifacts/lab/corpus/heldout.txt]
max_corpus_chars: 5000000
device: $DEV
dtype: float32
utility: $UTIL
seeds: [1]
output: ../../$R/$1
persistence:
  models:
$4
  attacks:
$3
EOC
}
