#!/usr/bin/env bash
# gpu-slot.sh COMMAND [ARGS...]: run COMMAND on one GPU of this host that no other replica uses.
#
# Docker gives every replica of a scaled service the same devices (a request of `count: 1` is
# GPU 0 for all of them), so the worker replicas reserve every GPU and each takes one here: the
# first free slot, held by an exclusive lock on a file in $GPU_SLOTS_DIR (a volume shared by the
# replicas of one host) for as long as COMMAND runs. The kernel drops the lock when the process
# dies, so a crashed worker's slot is free for its restart. Slot s is GPU s mod N; with
# WORKERS_PER_GPU=k there are k*N slots.
set -euo pipefail

slots_dir=${GPU_SLOTS_DIR:-/srv/gpu-slots}
per_gpu=${WORKERS_PER_GPU:-1}

if [ "$#" -eq 0 ]; then
    echo "usage: gpu-slot.sh COMMAND [ARGS...]" >&2
    exit 2
fi
if ! [[ "$per_gpu" =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu-slot: WORKERS_PER_GPU must be a positive integer, not '$per_gpu'" >&2
    exit 2
fi

gpus=$( (nvidia-smi --list-gpus 2>/dev/null || true) | grep -c '^GPU ' || true)
if [ "$gpus" -eq 0 ]; then
    echo "gpu-slot: no NVIDIA GPU visible in this container (nvidia-smi lists none): install" \
        "the NVIDIA Container Toolkit on this host, or run a CPU worker with" \
        "'docker compose run --rm orchestrate worker --study NAME --device cpu'" >&2
    exit 1
fi

mkdir -p "$slots_dir"
slots=$((gpus * per_gpu))
for ((slot = 0; slot < slots; slot++)); do
    exec {lock}>"$slots_dir/slot-$slot.lock"
    if flock --nonblock "$lock"; then
        export CUDA_VISIBLE_DEVICES=$((slot % gpus))
        echo "gpu-slot: slot $slot of $slots, GPU $CUDA_VISIBLE_DEVICES" >&2
        # exec keeps the locked descriptor open: the lock lives exactly as long as COMMAND.
        exec "$@"
    fi
    exec {lock}>&-
done
echo "gpu-slot: all $slots slots of this host are taken ($gpus GPU(s) x WORKERS_PER_GPU=$per_gpu):" \
    "scale the workers down to $slots or raise WORKERS_PER_GPU" >&2
exit 1
