"""What a .nemo's own model config implies for a run: its tokenizer and what TensorRT-LLM drops.

Plain Python and OmegaConf (a .nemo is a tar; only its ``model_config.yaml`` member is read),
so ``coreward preflight`` checks a checkpoint on a login node and the entry script checks the
merged config before any weight is loaded.

Upstream facts (NeMo 2.2.0, the NeMo of nvcr.io/nvidia/nemo:25.02):

- ``scripts/checkpoint_converters/convert_llama_hf_to_nemo.py`` records the tokenizer as a
  Hugging Face hub id for 32- and 80-layer Llama 3 models (``meta-llama/Meta-Llama-3.1-8B``,
  ``...-70B``: gated base-model repos) and as the converter's input directory otherwise
  (``convert_qwen2_hf_to_nemo.py`` always); every rank loads it at start-up, which an
  offline compute node cannot do for a hub id. It also sets ``scale_positional_embedding``
  (Llama 3.1 RoPE scaling, applied in training by ``mcore_model_customize``).
- ``nemo/export/tensorrt_llm.py`` ``TensorRTLLM.build`` (the in-memory build NeMo-Aligner's
  ``GPTGenerateTRTLLM.refit`` calls) gives TensorRT-LLM ``add_bias_linear=bias``,
  ``rotary_base`` and a linear ``seq_len_interpolation_factor`` only: RoPE scaling from
  ``scale_positional_embedding`` and QKV biases (``qkv_bias: True`` with ``bias: False``,
  Qwen2) are dropped, so the engine would sample from a different model than the one
  trained. NeMo-Aligner's ``load_and_override_model_config`` merges ``cfg.model`` over the
  .nemo's config after removing the keys marked True in ``overwrite_base_config``.
- ``mcore_model_customize`` (megatron_gpt_model.py) applies that RoPE scaling with
  ``scale_factor`` (default 8), ``low_freq_factor`` (1), ``high_freq_factor`` (4) and
  ``old_context_len`` (8192) from the model config; the Llama converter writes none of them,
  so a converted Llama 3.2 (Hugging Face ``rope_scaling.factor`` 32) trains with Llama 3.1's 8.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nemo_coreward.aligner.plan import ModelShape, PlanError

__all__ = [
    "MODEL_CONFIG_MEMBER",
    "apply_tokenizer_override",
    "check_local_tokenizer",
    "check_rope_scaling",
    "check_trt_llm_features",
    "effective_model_config",
    "hf_config_of",
    "model_shape",
    "read_model_config",
    "trt_llm_dropped_features",
]

MODEL_CONFIG_MEMBER = "model_config.yaml"


def read_model_config(path: str | Path) -> dict[str, Any]:
    """The model config of a .nemo (tar, its ``model_config.yaml`` member only), of an
    unpacked .nemo directory, or of a YAML file."""
    path = Path(path)
    try:
        if path.is_dir():
            text = (path / MODEL_CONFIG_MEMBER).read_text()
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                member = next(
                    (
                        m
                        for m in tar.getmembers()
                        if Path(m.name).name == MODEL_CONFIG_MEMBER and m.isfile()
                    ),
                    None,
                )
                if member is None:
                    raise PlanError(f"{path}: no {MODEL_CONFIG_MEMBER} inside; is it a .nemo?")
                text = tar.extractfile(member).read().decode()
        else:
            text = path.read_text()
    except OSError as err:
        raise PlanError(f"{path}: cannot read the model config ({err.strerror or err})") from None
    config = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    if not isinstance(config, dict):
        raise PlanError(f"{path}: the model config is not a mapping")
    return (
        config.get("model", config) if "model" in config and "num_layers" not in config else config
    )


def apply_tokenizer_override(model_cfg: DictConfig) -> None:
    """``model.tokenizer.type`` set: it replaces the .nemo's tokenizer section wholly
    (``overwrite_base_config.tokenizer``); unset (null): the section is dropped so the
    .nemo's tokenizer is kept. Call before ``load_and_override_model_config``."""
    with open_dict(model_cfg):
        tokenizer = model_cfg.get("tokenizer")
        if tokenizer is None or tokenizer.get("type") is None:
            model_cfg.pop("tokenizer", None)
            return
        if model_cfg.get("overwrite_base_config") is None:
            model_cfg.overwrite_base_config = {}
        model_cfg.overwrite_base_config.tokenizer = True


def effective_model_config(
    nemo_cfg: Mapping[str, Any] | None, model_cfg: DictConfig
) -> dict[str, Any]:
    """The model config a run sees: ``model_cfg`` merged over the .nemo's, as NeMo-Aligner's
    ``load_and_override_model_config`` merges them (the tokenizer override applied)."""
    overrides = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    apply_tokenizer_override(overrides)
    base = OmegaConf.create(dict(nemo_cfg or {}))
    flags = overrides.pop("overwrite_base_config", None) or {}
    for key, value in flags.items():
        if value is True:
            base.pop(key, None)
    return OmegaConf.to_container(OmegaConf.merge(base, overrides), resolve=True)


def check_local_tokenizer(
    tokenizer: Mapping[str, Any] | None, is_dir: Callable[[str], bool] = lambda p: Path(p).is_dir()
) -> str:
    """Refuse a tokenizer a compute node would download; return where it is loaded from.

    A Hugging Face tokenizer must be a local directory; a SentencePiece/tiktoken model
    file packed in the .nemo (``nemo:...``) or on disk is local by construction.
    """
    way_out = (
        "pass model.tokenizer.type=/path/to/the/model's/hf/dir (its local Hugging Face "
        "directory, mounted in the container)"
    )
    if not tokenizer:
        raise PlanError(f"model.tokenizer: the model config has no tokenizer; {way_out}")
    library = tokenizer.get("library", "sentencepiece")
    if library == "huggingface":
        source = str(tokenizer.get("type") or "")
        if not source.startswith("/") or not is_dir(source):
            kind = "the hub id" if not source.startswith("/") else "the missing directory"
            raise PlanError(
                f"model.tokenizer.type: {kind} {source!r} cannot be loaded on an offline "
                f"compute node; {way_out}"
            )
        return source
    model = tokenizer.get("model")
    if not model:
        raise PlanError(
            f"model.tokenizer.model: a {library} tokenizer without a model file; {way_out}"
        )
    return str(model)


def trt_llm_dropped_features(model_cfg: Mapping[str, Any]) -> list[str]:
    """Model features NeMo 2.2's TensorRT-LLM build leaves out (see the module docstring)."""
    dropped = []
    if model_cfg.get("scale_positional_embedding"):
        dropped.append("Llama 3.1-style RoPE scaling (model.scale_positional_embedding: True)")
    if model_cfg.get("qkv_bias") and not model_cfg.get("bias"):
        dropped.append("QKV biases (model.qkv_bias: True with model.bias: False, as in Qwen2)")
    return dropped


def check_trt_llm_features(model_cfg: Mapping[str, Any], trt_llm_enable: bool) -> None:
    """Refuse TensorRT-LLM generation for a model whose engine would differ from it."""
    dropped = trt_llm_dropped_features(model_cfg)
    if trt_llm_enable and dropped:
        raise PlanError(
            "trainer.grpo.trt_llm.enable: NeMo's TensorRT-LLM build drops "
            f"{' and '.join(dropped)}, "
            "so rollouts would come from a different model than the one trained; set "
            "trainer.grpo.trt_llm.enable=False (NeMo's own generation)"
        )


# NeMo's RoPE-scaling keys, their defaults in mcore_model_customize, and the Hugging Face names.
ROPE_SCALING = (
    ("scale_factor", 8, "factor"),
    ("low_freq_factor", 1, "low_freq_factor"),
    ("high_freq_factor", 4, "high_freq_factor"),
    ("old_context_len", 8192, "original_max_position_embeddings"),
)


def hf_config_of(directory: str | None) -> dict[str, Any] | None:
    """The ``config.json`` of a local Hugging Face model directory, if there is one."""
    path = Path(directory or "") / "config.json"
    if not directory or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PlanError(f"{path}: unreadable ({err})") from None


def check_rope_scaling(model_cfg: Mapping[str, Any], hf_config: Mapping[str, Any] | None) -> None:
    """Refuse Llama 3-style RoPE scaling that differs from the Hugging Face model's.

    Also the reverse: NeMo 2.2's converter takes ``--llama31`` as ``type=bool`` (default
    True, and any string is True), so a model without that scaling can come out with it on.
    """
    if hf_config is None:
        return
    rope = hf_config.get("rope_scaling") or {}
    if (rope.get("rope_type") or rope.get("type")) != "llama3":
        if model_cfg.get("scale_positional_embedding"):
            raise PlanError(
                "model.scale_positional_embedding: True, but the model's config.json has no "
                "llama3 RoPE scaling, so NeMo would train another RoPE than the model's; pass "
                "+model.scale_positional_embedding=False"
            )
        return
    if not model_cfg.get("scale_positional_embedding"):
        raise PlanError(
            "model.scale_positional_embedding: the model's config.json scales RoPE "
            "(llama3), which NeMo applies only when it is True; pass "
            "+model.scale_positional_embedding=True"
        )
    for key, default, hf_key in ROPE_SCALING:
        ours = model_cfg.get(key)
        ours = default if ours is None else ours
        if hf_key in rope and float(ours) != float(rope[hf_key]):
            source = " (NeMo's default)" if model_cfg.get(key) is None else ""
            raise PlanError(
                f"model.{key}: {ours}{source} differs from {hf_key} {rope[hf_key]} in the model's "
                f"config.json, so NeMo would train another RoPE than the model's; pass "
                f"+model.{key}={float(rope[hf_key]):g}"
            )


def model_shape(
    model_cfg: Mapping[str, Any], hf_config: Mapping[str, Any] | None = None
) -> ModelShape | None:
    """The shape of a GPT config, or None when it lacks the sizes (no .nemo given).

    The vocabulary comes from ``override_vocab_size`` or, failing that, the Hugging Face
    ``config.json`` beside the tokenizer; NeMo pads it, which the estimate ignores.
    """
    try:
        layers, hidden = int(model_cfg["num_layers"]), int(model_cfg["hidden_size"])
        heads = int(model_cfg["num_attention_heads"])
        ffn = int(model_cfg["ffn_hidden_size"])
    except (KeyError, TypeError, ValueError):
        return None
    vocab = model_cfg.get("override_vocab_size") or (hf_config or {}).get("vocab_size")
    activation = str(model_cfg.get("activation", "gelu"))
    return ModelShape(
        num_layers=layers,
        hidden_size=hidden,
        ffn_hidden_size=ffn,
        num_attention_heads=heads,
        num_query_groups=int(model_cfg.get("num_query_groups") or heads),
        kv_channels=int(model_cfg.get("kv_channels") or hidden // heads),
        vocab_size=int(vocab) if vocab else None,
        gated="glu" in activation or bool(model_cfg.get("gated_linear_unit")),
        qkv_bias=bool(model_cfg.get("qkv_bias") or model_cfg.get("bias")),
        tied_embeddings=bool(model_cfg.get("share_embeddings_and_output_weights", True)),
    )  # NeMo's default
