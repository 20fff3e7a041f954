"""nemo_coreward: Co-Reward label-free RL for LLM reasoning on the NeMo stack.

The base install (answers, rewards, RL maths, data) needs no GPU library. Torch is
required but never pinned here: on a CPU machine the Makefile installs the pinned CPU
wheel first (see constraints.txt); inside an NGC container the container's torch is used.
"""
from setuptools import find_packages, setup

EXTRAS = {
    "embedded": [
        "transformers>=4.46",
        "accelerate>=1.0",
        "gguf>=0.10",
        "safetensors",
        "lightning-fabric>=2.4",
        "tensorboard>=2.15",
    ],
    "server": ["nvidia-pytriton>=0.5.10"],
    "data": ["datasets>=2.19", "pyarrow", "champ-dataset>=1.0", "mathematics-dataset>=1.0"],
    "eval": ["matplotlib>=3.7"],
    # Installed by the NGC NeMo container; listed so `pip install .[aligner]` elsewhere
    # resolves the version the glue is written against.
    "aligner": ["nemo-aligner==0.7.0"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "ruff==0.17.6"],
}

setup(
    name="nemo_coreward",
    version="0.1.0",
    description="Co-Reward and Co-rewarding: label-free RL for LLM reasoning on NeMo",
    python_requires=">=3.10",
    packages=find_packages(include=["nemo_coreward", "nemo_coreward.*"]),
    package_data={"nemo_coreward": ["py.typed"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        # hydra-core pins the ANTLR runtime to 4.9; math-verify's LaTeX parser supports it.
        "math-verify[antlr4_9_3]>=0.7",
        "omegaconf>=2.3",
        "hydra-core>=1.3",
        "tqdm>=4.60",
        "tenacity>=8.2",  # the one retry loop (nemo_coreward.retry)
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["coreward=nemo_coreward.cli:main"]},
)
