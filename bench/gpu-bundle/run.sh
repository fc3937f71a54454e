#!/usr/bin/env bash
# Quadra Matrix GPU benchmark: the webgpu backend (Dawn on Vulkan), and PyTorch beside it when
# `python3 -c 'import torch'` works here. Needs nothing but this folder (its own Node, the CLI
# bundle, dawn.node and the Vulkan loader) and the machine's NVIDIA driver.
#
#   ./run.sh                                    the full run (~3 minutes on one H200)
#   QUADRA_BENCH_BATCHES=64 ./run.sh            fewer batch sizes
#
# Knobs (environment):
#   QUADRA_BENCH_BATCHES      batch sizes                     (default "64 1024 8192")
#   QUADRA_BENCH_ITERATIONS   timed steps per repeat          (default 20)
#   QUADRA_BENCH_REPEATS      timed repeats                   (default 5)
#   QUADRA_BENCH_WARMUP       untimed warm-up steps, ≥ 1      (default 5; the first timed step needs one before it)
#   QUADRA_BENCH_SPIKE_GRADIENT  surrogate | none             (default surrogate)
#   QUADRA_BENCH_PRECISIONS   "fp32 mixed" or "fp32"          (default "fp32 mixed")
#   QUADRA_BENCH_TIMEOUT      seconds per command             (default 120)
#   QUADRA_BENCH_DEADLINE     seconds for the whole run       (default 420; later commands are skipped)
#   QUADRA_BENCH_PYTORCH      auto | 0                        (default auto: when torch imports)
#   QUADRA_BENCH_PYTORCH_CPU_BATCHES  batches for PyTorch when it has no CUDA (default 64)
#   QUADRA_BENCH_PYTHON       the Python with torch           (default python3)
#   VK_ICD_FILENAMES          a Vulkan driver to use instead of NVIDIA's (e.g. SwiftShader, to test)
#   OUT                       folder for the results          (default: next to this script)
#
# Results: one table on stdout at the end; gpu-bench-results.json and gpu-bench-logs/ (each
# command's JSON and stderr) under $OUT when it is set, else next to this script.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE="$HERE/bin/node"
CLI="$HERE/dist/cli/quadra.mjs"

export QUADRA_BENCH_BATCHES=${QUADRA_BENCH_BATCHES:-"64 1024 8192"}
export QUADRA_BENCH_ITERATIONS=${QUADRA_BENCH_ITERATIONS:-20}
export QUADRA_BENCH_REPEATS=${QUADRA_BENCH_REPEATS:-5}
export QUADRA_BENCH_WARMUP=${QUADRA_BENCH_WARMUP:-5}
export QUADRA_BENCH_SPIKE_GRADIENT=${QUADRA_BENCH_SPIKE_GRADIENT:-surrogate}
export QUADRA_BENCH_PRECISIONS=${QUADRA_BENCH_PRECISIONS:-"fp32 mixed"}
TIMEOUT=${QUADRA_BENCH_TIMEOUT:-120}
DEADLINE=${QUADRA_BENCH_DEADLINE:-420}
PYTORCH=${QUADRA_BENCH_PYTORCH:-auto}
PYTORCH_CPU_BATCHES=${QUADRA_BENCH_PYTORCH_CPU_BATCHES:-64}
PYTHON=${QUADRA_BENCH_PYTHON:-python3}

DEST=${OUT:-$HERE}
LOGS="$DEST/gpu-bench-logs"
RESULTS="$DEST/gpu-bench-results.json"
mkdir -p "$LOGS" || { echo "run.sh: cannot create $LOGS" >&2; exit 1; }
rm -f "$LOGS"/*.json "$LOGS"/*.log "$LOGS"/*.txt "$LOGS/cases.tsv"
: >"$LOGS/cases.tsv"

say() { printf '%s\n' "$*"; }
has() { command -v "$1" >/dev/null 2>&1; }
has_precision() { case " $QUADRA_BENCH_PRECISIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- environment --------------------------------------------------------------------------------
# Our Vulkan loader first; the NVIDIA driver's own libraries come from the system paths.
export LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Dawn's windowing probes complain without it; nothing is written there.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR:-/nonexistent}" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d "${TMPDIR:-/tmp}/quadra-xdg.XXXXXX") && export XDG_RUNTIME_DIR &&
    trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
fi
# Stack traces in the logs if something fails (only printed on failure).
export QUADRA_DEBUG=1

# NVIDIA's Vulkan ICD: the driver package's JSON, or in a container the one the NVIDIA container
# toolkit mounts (only with NVIDIA_DRIVER_CAPABILITIES including 'graphics' or 'all').
find_nvidia_icd() {
  local f
  for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
    /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/nvidia_icd.json \
    /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json \
    /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json; do
    [ -f "$f" ] && { printf '%s\n' "$f"; return 0; }
  done
  return 1
}

# No JSON but the driver's Vulkan library is there (some minimal images): describe it ourselves.
find_nvidia_vulkan_library() {
  local d
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -e "$d/libGLX_nvidia.so.0" ] && { printf '%s\n' "$d/libGLX_nvidia.so.0"; return 0; }
  done
  if has ldconfig; then ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 .*x86-64/ { print $NF; exit }'; fi
}

ICD_NOTE=""
if [ -n "${VK_ICD_FILENAMES:-}" ]; then
  ICD_NOTE="VK_ICD_FILENAMES=$VK_ICD_FILENAMES (set by the caller)"
elif [ -n "${VK_DRIVER_FILES:-}" ]; then
  ICD_NOTE="VK_DRIVER_FILES=$VK_DRIVER_FILES (set by the caller)"
elif icd=$(find_nvidia_icd); then
  export VK_ICD_FILENAMES="$icd"
  ICD_NOTE="VK_ICD_FILENAMES=$icd"
else
  lib=$(find_nvidia_vulkan_library)
  if [ -n "$lib" ]; then
    icd="$LOGS/nvidia_icd.generated.json"
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$lib" >"$icd"
    export VK_ICD_FILENAMES="$icd"
    ICD_NOTE="VK_ICD_FILENAMES=$icd (generated: no nvidia_icd.json found, but $lib is installed)"
  else
    ICD_NOTE="no NVIDIA Vulkan driver found (no nvidia_icd.json, no libGLX_nvidia.so.0): the Vulkan loader uses whatever drivers it finds. In a container, NVIDIA_DRIVER_CAPABILITIES must include 'graphics' (or be 'all') for the NVIDIA container toolkit to mount the Vulkan driver."
  fi
fi
export QUADRA_BENCH_ICD_NOTE="$ICD_NOTE"

# ---- running one command with a time limit ------------------------------------------------------
START=$SECONDS
remaining() { echo $((DEADLINE - (SECONDS - START))); }
# budget CAP: a setup command's limit, CAP seconds but no more than the run has left (at least 5).
budget() {
  local left
  left=$(remaining)
  [ "$left" -lt 5 ] && left=5
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}

# limited SECONDS CMD...: GNU timeout signals the whole process group (the CLI's workers too).
limited() {
  local limit=$1
  shift
  if has timeout; then timeout --kill-after=10 "$limit" "$@"; else "$@"; fi
}

# case NAME BACKEND PRECISION BATCH CMD...: stdout → NAME.json, stderr → NAME.log, one line in cases.tsv.
run_case() {
  local name=$1 backend=$2 precision=$3 batch=$4
  shift 4
  local left limit started rc seconds
  left=$(remaining)
  if [ "$left" -le 10 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$backend" "$precision" "$batch" skip 0 "the whole run reached QUADRA_BENCH_DEADLINE=${DEADLINE}s" >>"$LOGS/cases.tsv"
    say "  $backend $precision batch $batch: skipped (time limit for the whole run reached)"
    return
  fi
  limit=$TIMEOUT
  [ "$left" -lt "$limit" ] && limit=$left
  printf '  %s %s batch %s … ' "$backend" "$precision" "$batch"
  started=$SECONDS
  limited "$limit" "$@" >"$LOGS/$name.json" 2>"$LOGS/$name.log" </dev/null
  rc=$?
  seconds=$((SECONDS - started))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$backend" "$precision" "$batch" "$rc" "$seconds" "" >>"$LOGS/cases.tsv"
  case $rc in
    0) say "done in ${seconds}s" ;;
    124 | 137) say "TIMED OUT after ${seconds}s (limit ${limit}s)" ;;
    *)
      say "FAILED (exit $rc) after ${seconds}s"
      # The CLI's one-line JSON error if there is one (the log then holds the stack), else the log's end.
      local message
      message=$("$NODE" -e 'try { const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").pop()); if (o.error) console.log(`${o.error.code}: ${o.error.message}`); } catch {}' "$LOGS/$name.json" 2>/dev/null)
      if [ -n "$message" ]; then say "      $message"; else tail -n 5 "$LOGS/$name.log" | sed 's/^/      /'; fi
      ;;
  esac
}

skip_case() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" skip 0 "$5" >>"$LOGS/cases.tsv"
  say "  $2 $3 batch $4: skipped ($5)"
}

bench_args() {
  printf '%s\n' --batch-size "$1" --iterations "$QUADRA_BENCH_ITERATIONS" --repeats "$QUADRA_BENCH_REPEATS" \
    --warmup "$QUADRA_BENCH_WARMUP" --spike-gradient "$QUADRA_BENCH_SPIKE_GRADIENT" --json
}

# ---- the machine ----------------------------------------------------------------------------------
say "== Quadra Matrix GPU benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -n))"
say "Vulkan: $ICD_NOTE"
if has nvidia-smi; then
  limited "$(budget 30)" nvidia-smi -L 2>&1 | tee "$LOGS/nvidia-smi.txt"
else
  say "nvidia-smi: not found on PATH"
fi
ls -1 /dev/nvidia* >"$LOGS/dev-nvidia.txt" 2>/dev/null || say "no /dev/nvidia* device nodes"
# dawn.node needs glibc >= 2.34 and GCC 12's libstdc++ (GLIBCXX_3.4.30): say so up front if not.
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
case "$glibc" in
  2.[0-9] | 2.[12][0-9] | 2.3[0-3]) say "WARNING: glibc $glibc here; dawn.node needs 2.34 or newer, so webgpu will not load" ;;
esac
cxx=""
for f in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /lib64/libstdc++.so.6; do [ -e "$f" ] && { cxx=$f; break; }; done
if [ -n "$cxx" ] && ! grep -qa 'GLIBCXX_3\.4\.30' "$cxx"; then
  say "WARNING: $cxx has no GLIBCXX_3.4.30 (GCC 12's libstdc++); dawn.node needs it, so webgpu will not load"
fi

say ""
say "== quadra hardware"
limited "$(budget 60)" "$NODE" "$CLI" hardware </dev/null 2>"$LOGS/hardware.log"
limited "$(budget 60)" "$NODE" "$CLI" hardware --json </dev/null >"$LOGS/hardware.json" 2>>"$LOGS/hardware.log"

# ---- webgpu ---------------------------------------------------------------------------------------
say ""
say "== quadra bench --backend webgpu ($QUADRA_BENCH_REPEATS × $QUADRA_BENCH_ITERATIONS steps after $QUADRA_BENCH_WARMUP warm-up, spike gradient $QUADRA_BENCH_SPIKE_GRADIENT)"
PRECISION_OPTION=no
if limited "$(budget 60)" "$NODE" "$CLI" bench --help 2>/dev/null </dev/null | grep -q -- '--precision'; then PRECISION_OPTION=yes; fi
for batch in $QUADRA_BENCH_BATCHES; do
  if has_precision fp32; then
    # shellcheck disable=SC2046
    run_case "webgpu-fp32-$batch" webgpu fp32 "$batch" "$NODE" "$CLI" bench --backend webgpu $(bench_args "$batch")
  fi
done
if has_precision mixed; then
  for batch in $QUADRA_BENCH_BATCHES; do
    if [ "$PRECISION_OPTION" = yes ]; then
      # shellcheck disable=SC2046
      run_case "webgpu-mixed-$batch" webgpu mixed "$batch" "$NODE" "$CLI" bench --backend webgpu --precision mixed $(bench_args "$batch")
    else
      # TODO(mixed precision): `quadra bench` has no --precision option yet (the WGSL kernels are
      # float32 only); these rows run by themselves once `quadra bench --help` lists --precision.
      skip_case "webgpu-mixed-$batch" webgpu mixed "$batch" "TODO: quadra bench has no --precision option yet"
    fi
  done
fi

# ---- PyTorch --------------------------------------------------------------------------------------
say ""
if [ "$PYTORCH" = 0 ]; then
  say "== PyTorch reference: off (QUADRA_BENCH_PYTORCH=0)"
elif ! TORCH_VERSION=$(limited "$(budget 120)" "$PYTHON" -c 'import torch; print(torch.__version__)' 2>"$LOGS/torch-import.log"); then
  say "== PyTorch reference: skipped ($PYTHON cannot import torch: $(tail -n 1 "$LOGS/torch-import.log" 2>/dev/null))"
else
  if limited "$(budget 120)" "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    device=cuda
    batches=$QUADRA_BENCH_BATCHES
  else
    device=cpu
    batches=$PYTORCH_CPU_BATCHES
  fi
  say "== PyTorch reference: torch $TORCH_VERSION on $device ($PYTHON)"
  for batch in $batches; do
    if has_precision fp32; then
      # shellcheck disable=SC2046
      run_case "pytorch-$device-fp32-$batch" "pytorch-$device" fp32 "$batch" "$PYTHON" "$HERE/pytorch-reference.py" --device "$device" $(bench_args "$batch")
    fi
  done
  if has_precision mixed; then
    for batch in $batches; do
      if [ "$device" = cuda ]; then
        # shellcheck disable=SC2046
        run_case "pytorch-$device-mixed-$batch" "pytorch-$device" mixed "$batch" "$PYTHON" "$HERE/pytorch-reference.py" --device cuda --amp $(bench_args "$batch")
      else
        skip_case "pytorch-$device-mixed-$batch" "pytorch-$device" mixed "$batch" "--amp needs CUDA"
      fi
    done
  fi
fi

# ---- the table --------------------------------------------------------------------------------------
say ""
limited 60 "$NODE" "$HERE/table.mjs" "$LOGS" "$RESULTS" "$HERE/BUILD-INFO.json"
rc=$?
say "(whole run: $((SECONDS - START))s)"
exit $rc
