#!/usr/bin/env bash
# The whole benchmark (the full plan) on a GPU machine, in under five minutes.
#
# The GPU machine reaches no network, so nothing is downloaded: JAX with
# CUDA (jax[cuda12]) and the project's dependencies must already be
# installed there, or given as wheels in $WHEELS (installed with
# pip --no-index). PyTorch is optional; without it the peer is skipped.
# Writes bench-gpu.md and bench-gpu.json to $OUT (or benchmarks/out).
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#   PLAN=--quick bash benchmarks/gpu_check.sh    # the quick plan instead
#
# The full plan took 52-58 s on this project's 2-core CPU machine, its
# PyTorch, NumPy and SciPy peers included; they run on the GPU machine's CPU.
set -euo pipefail

cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-benchmarks/out}
mkdir -p "$out"

if ! "$python" -c "import jax, optax, chex, numpy, scipy, pandas" 2>/dev/null; then
    if [ -n "${WHEELS:-}" ]; then
        "$python" -m pip install --no-index --find-links "$WHEELS" \
            jax optax chex numpy scipy pandas tqdm
    else
        echo "gpu_check: jax, optax, chex, numpy, scipy or pandas is missing;" \
            "install them or set WHEELS to a folder of wheels" >&2
        exit 3
    fi
fi

"$python" -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
backend=$("$python" -c "import jax; print(jax.default_backend())")
if [ "$backend" != "gpu" ]; then
    echo "gpu_check: JAX found no GPU (backend: $backend); install jax[cuda12]" >&2
    exit 4
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    >"$out/nvidia-smi.csv" 2>/dev/null || true

# Allocate on demand, so that memory_stats() peaks show what the run used.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# shellcheck disable=SC2086
timeout 280 "$python" -m benchmarks ${PLAN:-} --json "$out/bench-gpu.json" \
    | tee "$out/bench-gpu.md"
