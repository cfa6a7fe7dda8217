# Shared settings of scripts/lab/cpu-lambda-cap/*.sh (sourced): CAP the OUT folder of scripts/lab/cpu-capacity-arch.sh,
# O the oml binary (OML), W the output folder (OUT), HELD the held-out text; one libtorch thread per job.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CAP="${CAP:?set CAP to the OUT folder of scripts/lab/cpu-capacity-arch.sh}"
O="${OML:-$root/src/Oml.Cli/bin/Release/net10.0/oml}"
W="${OUT:-$root/artifacts/lab/cpu-lambda-cap}"; HELD=$CAP/corpus/heldout.txt
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p $W/sets $W/models $W/res $W/logs
