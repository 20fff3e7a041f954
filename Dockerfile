# nemo_coreward on the NGC NeMo container that ships NeMo-Aligner 0.7.0 (nemo:25.02; 24.12
# ships 0.6.0 with the same REINFORCE classes). The container's torch, Transformer Engine,
# Megatron-core, NeMo, NeMo-Aligner, TensorRT-LLM and PyTriton are used as they are: the
# project installs with --no-deps, and what it adds is resolved against a constraints file
# frozen from the container, so pip can add packages but never change one it already has.
#
#   docker build -t nemo-coreward:25.02 .
#   examples/ngc/run_local.sh (one machine) or examples/slurm/*.sbatch (pyxis: CONTAINER=...)
# The build ends by composing a shipped config with `coreward preflight` (the front door the
# launchers run before any GPU work). Hub access stays possible in the image; the launchers
# set HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 for training.
FROM nvcr.io/nvidia/nemo:25.02

WORKDIR /opt/nemo_coreward
COPY setup.py pyproject.toml README.md ./
COPY nemo_coreward ./nemo_coreward
COPY conf ./conf
COPY examples ./examples

RUN python -c "import nemo_aligner, megatron.core, torch; print('nemo_aligner', nemo_aligner.__version__ if hasattr(nemo_aligner, '__version__') else '?', 'torch', torch.__version__)" \
 && pip freeze | grep -E '^[A-Za-z0-9_.-]+==' > /tmp/container-constraints.txt \
 && pip install --no-cache-dir --no-deps -e . \
 && pip install --no-cache-dir -c /tmp/container-constraints.txt \
        "math-verify[antlr4_9_3]>=0.7" "nvidia-pytriton>=0.5.10" \
 && python -c "import nemo_coreward.aligner.config, nemo_coreward.server, math_verify; print('nemo_coreward ok')" \
 && coreward preflight --config-name gpt_grpo_coreward_llama31_8b --train-pairs 7500 --time-limit 4:00:00

ENV PYTHONUNBUFFERED=1
