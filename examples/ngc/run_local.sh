#!/usr/bin/env bash
# GRPO with Co-Reward on one local multi-GPU machine, in the project's NGC image (Dockerfile).
#
#   docker build -t nemo-coreward:25.02 .
#   NEMO_CKPT=/models/llama31-8b.nemo HF_MODEL_DIR=/models/Llama-3.1-8B-Instruct \
#   TRAIN_DATA=/data/math_twins.jsonl VAL_DATA=/data/math500_twins.jsonl \
#   examples/ngc/run_local.sh [extra Hydra overrides]
#
# Inside the container, `coreward preflight` first checks the run with the same overrides
# (and TIME_LIMIT, when the machine is lent for a fixed time) and prints its plan; then the
# reward server starts on 127.0.0.1 and the actor is launched with mpirun (TensorRT-LLM needs
# MPI ranks equal to torch ranks). Nothing is downloaded: HF_HUB_OFFLINE and
# TRANSFORMERS_OFFLINE are set and the tokenizer is read from HF_MODEL_DIR (NeMo's Llama 3.1
# converter records a hub id in the .nemo). Paths are mounted at the same place inside.
set -euo pipefail

IMAGE=${IMAGE:-nemo-coreward:25.02}              # built from the project's Dockerfile
NEMO_CKPT=${NEMO_CKPT:?set NEMO_CKPT to the .nemo checkpoint}
HF_MODEL_DIR=${HF_MODEL_DIR:-}                   # the model's local HF folder: model.tokenizer.type (empty = the .nemo's)
TRAIN_DATA=${TRAIN_DATA:?set TRAIN_DATA to the paired training records}
VAL_DATA=${VAL_DATA:?set VAL_DATA to the paired validation records}
RESULTS=${RESULTS:-$PWD/results}                 # exp_manager.explicit_log_dir
CONFIG_NAME=${CONFIG_NAME:-gpt_grpo_coreward_llama31_8b}
GPUS=${GPUS:-8}                                  # trainer.devices and MPI ranks
TIME_LIMIT=${TIME_LIMIT:-}                       # SLURM format, e.g. 8:00:00; empty = no limit
TIME_MARGIN=${TIME_MARGIN:-30}                   # kept back for start-up, the last step and its save
SERVER_PORT=${SERVER_PORT:-5590}
SERVER_WORKERS=${SERVER_WORKERS:-4}
SHM_SIZE=${SHM_SIZE:-64g}

mkdir -p "$RESULTS"
mounts=()
for path in "$NEMO_CKPT" "$TRAIN_DATA" "$VAL_DATA"; do
    dir=$(cd "$(dirname "$path")" && pwd)
    mounts+=(-v "$dir:$dir:ro")
done
[[ -z $HF_MODEL_DIR ]] || mounts+=(-v "$HF_MODEL_DIR:$HF_MODEL_DIR:ro")
mounts+=(-v "$RESULTS:$RESULTS")

overrides=(pretrained_checkpoint.restore_from_path="$NEMO_CKPT"
           model.data.data_prefix.train="$TRAIN_DATA" model.data.data_prefix.validation="$VAL_DATA"
           exp_manager.explicit_log_dir="$RESULTS" trainer.num_nodes=1 trainer.devices="$GPUS"
           coreward.server.enable=True coreward.server.url="http://127.0.0.1:$SERVER_PORT")
[[ -z $HF_MODEL_DIR ]] || overrides+=(model.tokenizer.type="$HF_MODEL_DIR")

# shellcheck disable=SC2016  # expanded inside the container
exec docker run --rm --gpus all --ipc=host --shm-size="$SHM_SIZE" \
    --ulimit memlock=-1 --ulimit stack=67108864 "${mounts[@]}" \
    -e HF_HUB_OFFLINE=1 -e TRANSFORMERS_OFFLINE=1 \
    -e SERVER_PORT="$SERVER_PORT" -e SERVER_WORKERS="$SERVER_WORKERS" -e GPUS="$GPUS" \
    -e NEMO_CKPT="$NEMO_CKPT" -e CONFIG_NAME="$CONFIG_NAME" \
    -e TIME_LIMIT="$TIME_LIMIT" -e TIME_MARGIN="$TIME_MARGIN" \
    "$IMAGE" bash -c '
set -euo pipefail
preflight=(coreward preflight --config-name "$CONFIG_NAME" --nemo "$NEMO_CKPT" --time-margin "$TIME_MARGIN")
[[ -z $TIME_LIMIT ]] || preflight+=(--time-limit "$TIME_LIMIT")
"${preflight[@]}" "$@"
plan=$("${preflight[@]}" --json "$@")
max_time=$(grep -o "\"max_time_per_run\": \"[^\"]*\"" <<<"$plan" | head -n1 | cut -d"\"" -f4)
limit=()
[[ -z $max_time || " $* " == *" exp_manager.max_time_per_run="* ]] || limit=(exp_manager.max_time_per_run="$max_time")
coreward serve host=127.0.0.1 http_port=$SERVER_PORT grpc_port=$((SERVER_PORT + 1)) \
    metrics_port=$((SERVER_PORT + 2)) workers=$SERVER_WORKERS &
server=$!
trap "kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true" EXIT
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$SERVER_PORT/v2/models/co_reward/ready" && break
    kill -0 $server 2>/dev/null || { echo "reward server exited" >&2; exit 1; }
    sleep 1
done
mpirun --allow-run-as-root -np "$GPUS" python -u /opt/nemo_coreward/examples/train_gpt_grpo_coreward.py \
    --config-name "$CONFIG_NAME" "$@" "${limit[@]}"
' run_local "${overrides[@]}" "$@"
