#!/usr/bin/env bash
# One prepared check of every CUDA path of fastkd, in <= 8 minutes on an H100 including the install.
#
#   OUT=runs/gpu_check bench/gpu_check.sh [--venv DIR] [--python PY] [--wheels DIR] [--steps LIST]
#                                          [--tests EXPR] [--bench-methods LIST] [--reference-repo DIR ...]
#   bench/gpu_check.sh --cpu-dry-run        # the script's own plumbing on a CPU (CI runs this)
#
# Steps (each under its own timeout; budgets in bench/README.md): install the checkout (non-editable) into a fresh
# venv that also sees PY's site-packages (so a machine's preinstalled torch/triton are reused, nothing is
# downloaded); print GPU, driver, torch/triton/DALI versions; run the `cuda`-marked tests (tests/cuda); compare
# DALI's GPU JPEG decode with the CPU twin on ImageNet-like files (`pipelines`; skipped without DALI); project the
# paper's full runs (`fastkd bench --projection`); run `fastkd bench --preset gpu-quick`; write OUT/summary.json +
# OUT/summary.md. Exit 0 when every check passed, 1 when a correctness check failed or a step did not finish, 2 on
# a bad argument.
#   --venv DIR           install into DIR (reused when it already holds a venv; default: a new one in a temp folder)
#   --python PY          interpreter the venv is made from; its packages stay visible (default: python3)
#   --wheels DIR         wheels to install offline first (e.g. pydantic, nvidia-dali-cuda130 on a machine without them)
#   --steps LIST         which of cuda-tests,pipelines,projection,bench to run (default: all four; install,
#                        versions and the summary always run)
#   --tests EXPR         only the CUDA tests pytest's -k EXPR selects (e.g. engine)
#   --bench-methods LIST the bench rows to run (fastkd bench --methods; default: all)
#   --reference-repo DIR a clone of SunGL001/Spaced-KD or SunGL001/spacing_generalization (repeat for both): adds
#                        the step `authors`, fastkd compat against the authors' own scripts (fastkd bench
#                        --reference-repo ... --like-for-like, the rows of --bench-methods)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-runs/gpu_check}"
MODE=gpu
VENV=""
BASE_PYTHON=python3
WHEELS=""
STEPS="cuda-tests,pipelines,projection,bench"
TESTS=""
BENCH_METHODS="all"
REFERENCE_REPOS=()

usage_error() {
    echo "bench/gpu_check.sh: error: $1 (usage: [OUT=DIR] bench/gpu_check.sh [--cpu-dry-run] [--venv DIR] [--python PY] [--wheels DIR] [--steps LIST] [--tests EXPR] [--bench-methods LIST] [--reference-repo DIR ...])" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry-run) MODE=cpu-dry-run ;;
        --venv|--python|--wheels|--steps|--tests|--bench-methods|--reference-repo)
            [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || usage_error "$1 needs a value"
            case "$1" in
                --venv) VENV="$2" ;; --python) BASE_PYTHON="$2" ;; --wheels) WHEELS="$2" ;;
                --steps) STEPS="$2" ;; --tests) TESTS="$2" ;; --bench-methods) BENCH_METHODS="$2" ;;
                --reference-repo) [ -d "$2" ] || usage_error "--reference-repo $2: not a folder"
                                  REFERENCE_REPOS+=(--reference-repo "$(cd "$2" && pwd)") ;;
            esac
            shift ;;
        -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
    shift
done
for wanted in ${STEPS//,/ }; do
    case "$wanted" in cuda-tests|pipelines|projection|bench) ;; *) usage_error "--steps: unknown step '$wanted' (choose from cuda-tests, pipelines, projection, bench)" ;; esac
done
wants() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# absolute: the steps run from a scratch folder. (No realpath: a venv's python is a symlink that must stay one.)
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" ;; esac; }
command -v "$BASE_PYTHON" >/dev/null 2>&1 || usage_error "--python $BASE_PYTHON: no such interpreter"
case "$BASE_PYTHON" in */*) BASE_PYTHON="$(absolute "$BASE_PYTHON")" ;; esac
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || usage_error "--wheels $WHEELS: not a folder"
[ -z "$WHEELS" ] || WHEELS="$(absolute "$WHEELS")"
[ -z "$VENV" ] || VENV="$(absolute "$VENV")"
if [ "$MODE" = gpu ] && ! "$BASE_PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "bench/gpu_check.sh: error: no CUDA device visible to $BASE_PYTHON's torch; on a machine without a GPU run bench/gpu_check.sh --cpu-dry-run" >&2
    exit 2
fi

mkdir -p "$OUT/logs" || { echo "bench/gpu_check.sh: error: cannot create OUT=$OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/steps.jsonl" "$OUT/cuda-tests.xml" "$OUT/versions.json" "$OUT/pipelines.json" "$OUT/summary.json" \
    "$OUT/summary.md"
rm -rf "$OUT/bench" "$OUT/projection" "$OUT/logs"/*
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/fastkd-gpu-check.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
[ -n "$VENV" ] || VENV="$SCRATCH/venv"

# step NAME BUDGET_SECONDS COMMAND...: runs COMMAND (a program, or a function of this script) from the scratch
# folder, so `import fastkd` finds the installed package and not the checkout, under a timeout; shows and logs its
# output and appends its record to steps.jsonl.
step() {
    local name="$1" budget="$2" log="logs/$1.log" start_ms elapsed_ms rc timed_out=false
    shift 2
    if declare -F "$1" >/dev/null; then set -- bash -c "$1"; fi
    echo "=== $name (budget ${budget} s)"
    start_ms=$(( $(date +%s%N) / 1000000 ))
    (cd "$SCRATCH" && timeout --kill-after=10 "$budget" "$@") 2>&1 | tee "$OUT/$log"
    rc=${PIPESTATUS[0]}
    elapsed_ms=$(( $(date +%s%N) / 1000000 - start_ms ))
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        timed_out=true
        echo "=== $name: timed out after ${budget} s" | tee -a "$OUT/$log"
    fi
    printf '{"name": "%s", "budget_s": %d, "seconds": %d.%03d, "rc": %d, "timed_out": %s, "log": "%s"}\n' \
        "$name" "$budget" $(( elapsed_ms / 1000 )) $(( elapsed_ms % 1000 )) "$rc" "$timed_out" "$log" \
        >> "$OUT/steps.jsonl"
    return "$rc"
}

install() {
    local src="$SCRATCH/src" site pip_options=(--no-input --no-build-isolation --retries 1 --timeout 15)
    mkdir -p "$src"
    cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/fastkd" "$REPO/kernels" "$REPO/pipelines" "$REPO/configs" "$src/"
    if [ ! -x "$VENV/bin/python" ]; then
        "$BASE_PYTHON" -m venv --without-pip "$VENV" || return 1
        # The new venv sees the base interpreter's packages (torch, triton, ... as installed on the machine).
        site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        "$BASE_PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' > "$site/gpu_check_base_packages.pth"
    fi
    if [ -n "$WHEELS" ]; then
        "$BASE_PYTHON" -m pip --python "$VENV/bin/python" install "${pip_options[@]}" --no-index \
            --find-links "$WHEELS" "$WHEELS"/*.whl || return 1
        pip_options+=(--no-index --find-links "$WHEELS")
    fi
    # The dry run installs fastkd alone (its dependencies are the base interpreter's); on a GPU pip checks them.
    [ "$MODE" = gpu ] || pip_options+=(--no-deps)
    "$BASE_PYTHON" -m pip --python "$VENV/bin/python" install "${pip_options[@]}" "$src" || return 1
    "$VENV/bin/python" -c 'import fastkd.bench, fastkd.kernels, fastkd.pipelines; print("installed:", fastkd.__file__)'
}

PY="$VENV/bin/python"
export PYTHONUNBUFFERED=1 REPO MODE VENV BASE_PYTHON WHEELS SCRATCH
export -f install
TEST_FILTER=()
[ -z "$TESTS" ] || TEST_FILTER=(-k "$TESTS")
if ! step install "$([ "$MODE" = gpu ] && echo 60 || echo 120)" install; then
    echo "=== install failed: nothing else can run"
elif [ "$MODE" = gpu ]; then
    step versions 15 "$PY" "$REPO/bench/gpu_check.py" versions "$OUT"
    ! wants cuda-tests || step cuda-tests 180 "$PY" -m pytest "$REPO/tests/cuda" -c "$REPO/pyproject.toml" \
        --rootdir "$REPO" -p no:cacheprovider -q -rs -m cuda "${TEST_FILTER[@]}" --junitxml "$OUT/cuda-tests.xml"
    ! wants pipelines || step pipelines 90 "$PY" "$REPO/bench/gpu_check.py" pipelines "$OUT"
    ! wants projection || step projection 150 "$VENV/bin/fastkd" bench --preset gpu-quick --projection \
        --out "$OUT/projection"
    ! wants bench || step bench 150 "$VENV/bin/fastkd" bench --preset gpu-quick --methods "$BENCH_METHODS" \
        --out "$OUT/bench"
    [ ${#REFERENCE_REPOS[@]} -eq 0 ] || step authors 300 "$VENV/bin/fastkd" bench --preset gpu-quick \
        --methods "$BENCH_METHODS" "${REFERENCE_REPOS[@]}" --like-for-like --out "$OUT/authors"
else
    step versions 30 "$PY" "$REPO/bench/gpu_check.py" versions "$OUT"
    ! wants cuda-tests || step cuda-tests 120 "$PY" -m pytest "$REPO/tests/cuda" -c "$REPO/pyproject.toml" \
        --rootdir "$REPO" -p no:cacheprovider -q -rs -m cuda "${TEST_FILTER[@]}" --junitxml "$OUT/cuda-tests.xml"
    ! wants pipelines || step pipelines 120 "$PY" "$REPO/bench/gpu_check.py" pipelines "$OUT"
    ! wants projection || step projection 120 "$VENV/bin/fastkd" bench --preset test --projection \
        --out "$OUT/projection"
    if wants bench; then
        step bench-plan 60 "$VENV/bin/fastkd" bench --preset gpu-quick --plan --out "$OUT/bench"
        step bench 180 "$VENV/bin/fastkd" bench --preset test --methods spaced_online_kd --rounds 1 --out "$OUT/bench"
    fi
    [ ${#REFERENCE_REPOS[@]} -eq 0 ] || step authors 180 "$VENV/bin/fastkd" bench --preset test \
        --methods spaced_online_kd "${REFERENCE_REPOS[@]}" --like-for-like --out "$OUT/authors"
fi
echo "=== summary"
"$BASE_PYTHON" "$REPO/bench/gpu_check.py" summary "$OUT" --mode "$MODE"
