"""Registry: lookup by name, aliases, clear errors, and no torch on the import path."""
import subprocess
import sys

import pytest

import nemo_coreward.rl as rl
from nemo_coreward.registry import Registry


def test_register_get_names_and_aliases():
    reg: Registry = Registry("widget")

    @reg.register("b")
    @reg.register("a")
    def double(x):
        return 2 * x

    assert reg.get("a") is double and reg.get("b") is double
    assert reg.names() == ("a", "b")
    assert "a" in reg and "c" not in reg
    assert list(reg) == ["a", "b"] and len(reg) == 2
    assert double(3) == 6  # the decorator returns the function unchanged


def test_unknown_name_lists_valid_names():
    reg: Registry = Registry("widget")
    reg.register("zeta")(len)
    reg.register("alpha")(len)
    with pytest.raises(ValueError, match=r"unknown widget 'nope'; valid names: alpha, zeta"):
        reg.get("nope")
    with pytest.raises(ValueError, match="unknown widget"):
        reg.get(["unhashable"])  # type: ignore[arg-type]


def test_duplicate_and_empty_names_rejected():
    reg: Registry = Registry("widget")
    reg.register("a")(len)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(abs)
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("")


def test_grading_never_imports_torch():
    """The reward server's workers and `coreward score` must start without torch."""
    code = ("import sys, nemo_coreward.registry, nemo_coreward.answers, nemo_coreward.reward, "
            "nemo_coreward.reward.cli; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_resolves():
    assert rl.__all__ == sorted(rl.__all__)
    for name in rl.__all__:
        assert getattr(rl, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rl.nope  # noqa: B018
    assert set(rl.ADVANTAGES.names()) == {"grpo", "dr_grpo", "rloo"}
    assert set(rl.KL_PENALTIES.names()) == {"k1", "k2", "k3", "low_var_kl", "abs"}
    assert set(rl.AGGREGATIONS.names()) == {
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "side-token-mean-sum"}
