#!/usr/bin/env bash
# Build the CPU test environment for nemo_coreward/aligner: the real nemo-aligner 0.7.0.
#
#   scripts/setup_aligner_env.sh            # creates or completes .venv-aligner (idempotent)
#   ALIGNER_VENV=/path scripts/setup_aligner_env.sh
#   .venv-aligner/bin/python -m pytest tests/aligner
#
# Why a separate venv: nemo-aligner 0.7.0 needs NeMo <= 2.4.1 and megatron-core < 0.16, whose
# dependency trees (lightning, pangu, pyarrow < 22, ...) must not leak into the main test venv.
# Why this order: torch==2.13.0 goes in FIRST and a constraints file pins it for every later
# step, because any package asking for another torch would pull a multi-GB CUDA build.
# torchvision is removed afterwards: NeMo pulls one built for another torch, and its broken
# C++ ops make `import nemo.collections.nlp` fail. transformer-engine is never installed: it
# has no CPU build, and its PyPI meta package makes megatron.core raise at import.
# TensorRT-LLM cannot be installed on CPU machines; tests/aligner/_placeholders stands in.
# mpi4py (with PyPI's MPICH) is real: NeMo's TensorRT-LLM export module imports it.
# A stamp named after the hash of this script re-runs the install when the script changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALIGNER_VENV:-$ROOT/.venv-aligner}"
PY="${PY:-python3}"
TORCH_VERSION="2.13.0"
STAMP="$VENV/.installed-$(sha1sum "${BASH_SOURCE[0]}" | cut -c1-12)"

if [[ -f "$STAMP" ]]; then
    echo "setup_aligner_env: $VENV is up to date"
    exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

CONSTRAINTS="$VENV/aligner-constraints.txt"
cat > "$CONSTRAINTS" <<EOF
torch==$TORCH_VERSION
numpy<2
pyarrow<22
pangu<5
megatron-core<0.16
nemo-toolkit==2.4.1
nemo-aligner==0.7.0
pandas<3
EOF

"${PIP[@]}" --upgrade pip
"${PIP[@]}" -c "$CONSTRAINTS" "torch==$TORCH_VERSION"
"${PIP[@]}" -c "$CONSTRAINTS" \
    "nemo-aligner==0.7.0" "nemo-toolkit[nlp]==2.4.1" "megatron-core<0.16" \
    "pyarrow<22" "pangu<5" nvidia-pytriton mpi4py mpich
# NeMo's dependency tree brings a torchvision built against another torch.
"$VENV/bin/python" -m pip uninstall -y -q torchvision || true
if "$VENV/bin/python" -m pip show -q transformer-engine >/dev/null 2>&1 \
    || "$VENV/bin/python" -m pip show -q transformer_engine >/dev/null 2>&1; then
    echo "setup_aligner_env: transformer-engine got installed; removing it" >&2
    "$VENV/bin/python" -m pip uninstall -y -q transformer-engine transformer_engine || true
fi
# The project itself without its dependency list (which would re-resolve torch), then what
# its core needs.
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps -e "$ROOT"
"${PIP[@]}" -c "$CONSTRAINTS" "math-verify[antlr4_9_3]" omegaconf hydra-core tqdm \
    pytest hypothesis

"$VENV/bin/python" - <<'EOF'
import torch
assert torch.__version__.split("+")[0] == "2.13.0", f"torch was changed to {torch.__version__}"
import megatron.core, nemo, nemo_aligner  # noqa: E401,F401
print("setup_aligner_env: torch", torch.__version__, "nemo", nemo.__version__,
      "megatron-core", megatron.core.__version__)
EOF

rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "setup_aligner_env: done in $(( $(date +%s) - start )) s"
