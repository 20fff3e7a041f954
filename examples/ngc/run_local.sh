#!/usr/bin/env bash
# GRPO with Co-Reward on one local multi-GPU machine, in the project's NGC image (Dockerfile).
#
#   docker build -t nemo-coreward:25.02 .
#   NEMO_CKPT=/models/llama31-8b.nemo TRAIN_DATA=/data/math_twins.jsonl \
#   VAL_DATA=/data/math500_twins.jsonl examples/ngc/run_local.sh [extra Hydra overrides]
#
# The reward server runs in the same container on 127.0.0.1; the actor is launched with
# mpirun (TensorRT-LLM needs MPI ranks equal to torch ranks). Paths are mounted at the
# same place inside the container.
set -euo pipefail

IMAGE=${IMAGE:-nemo-coreward:25.02}              # built from the project's Dockerfile
NEMO_CKPT=${NEMO_CKPT:?set NEMO_CKPT to the .nemo checkpoint}
TRAIN_DATA=${TRAIN_DATA:?set TRAIN_DATA to the paired training records}
VAL_DATA=${VAL_DATA:?set VAL_DATA to the paired validation records}
RESULTS=${RESULTS:-$PWD/results}                 # exp_manager.explicit_log_dir
CONFIG_NAME=${CONFIG_NAME:-gpt_grpo_coreward_llama31_8b}
GPUS=${GPUS:-8}                                  # trainer.devices and MPI ranks
SERVER_PORT=${SERVER_PORT:-5590}
SERVER_WORKERS=${SERVER_WORKERS:-4}
SHM_SIZE=${SHM_SIZE:-64g}

mkdir -p "$RESULTS"
mounts=()
for path in "$NEMO_CKPT" "$TRAIN_DATA" "$VAL_DATA"; do
    dir=$(cd "$(dirname "$path")" && pwd)
    mounts+=(-v "$dir:$dir:ro")
done
mounts+=(-v "$RESULTS:$RESULTS")

# shellcheck disable=SC2016  # expanded inside the container
exec docker run --rm --gpus all --ipc=host --shm-size="$SHM_SIZE" \
    --ulimit memlock=-1 --ulimit stack=67108864 "${mounts[@]}" \
    -e SERVER_PORT="$SERVER_PORT" -e SERVER_WORKERS="$SERVER_WORKERS" -e GPUS="$GPUS" \
    "$IMAGE" bash -c '
set -euo pipefail
coreward serve host=127.0.0.1 http_port=$SERVER_PORT grpc_port=$((SERVER_PORT + 1)) \
    metrics_port=$((SERVER_PORT + 2)) workers=$SERVER_WORKERS &
server=$!
trap "kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true" EXIT
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$SERVER_PORT/v2/models/co_reward/ready" && break
    kill -0 $server 2>/dev/null || { echo "reward server exited" >&2; exit 1; }
    sleep 1
done
mpirun --allow-run-as-root -np "$GPUS" python -u /opt/nemo_coreward/examples/train_gpt_grpo_coreward.py "$@"
' run_local \
    --config-name "$CONFIG_NAME" \
    pretrained_checkpoint.restore_from_path="$NEMO_CKPT" \
    model.data.data_prefix.train="$TRAIN_DATA" model.data.data_prefix.validation="$VAL_DATA" \
    exp_manager.explicit_log_dir="$RESULTS" trainer.num_nodes=1 trainer.devices="$GPUS" \
    coreward.server.enable=True coreward.server.url="http://127.0.0.1:$SERVER_PORT" "$@"
