"The attention contract from outside: combinations that work, combinations refused in one line, and a cheap config import."
import subprocess, sys
import pytest
import torch
from nanoformer.config import ModelConfig, NanoformerError
from nanoformer.model import GPT

TINY = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=4, block_size=32)


def cached_vs_full(model: GPT, T: int = 12) -> float:
    "Largest |logit| difference between a full forward and a prefill of 4 tokens followed by one token at a time."
    idx = torch.randint(0, model.cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(idx).logits
        cache = model.new_cache(2, T)
        steps = [model(idx[:, :4], cache=cache).logits] + [model(idx[:, t:t + 1], cache=cache).logits for t in range(4, T)]
    return (torch.cat(steps, 1) - full).abs().max().item()


@pytest.mark.parametrize('attention', ['ngpt', 'diff'])
def test_kv_sharing_works_for(attention):
    "KV sharing is read (fewer parameters: later layers of a group project queries only) and cached decoding equals the full forward."
    torch.manual_seed(0)
    plain, shared = GPT(ModelConfig(**TINY, attention=attention)), GPT(ModelConfig(**TINY, attention=attention, kv_share=2)).eval()
    assert shared.num_params() < plain.num_params()
    assert [b.attn.owns_kv for b in shared.blocks] == [True, False, True, False]
    assert cached_vs_full(shared) < 1e-5


def test_head_sim_jsd_on_signed_maps_is_refused():
    with pytest.raises(NanoformerError, match=r"attention='diff' does not support attention weights that are probability distributions.*head_sim_loss_type='jsd'"):
        ModelConfig(**TINY, attention='diff', head_sim_loss=True)
    ModelConfig(**TINY, attention='diff', head_sim_loss=True, head_sim_loss_type='mse')  # MSE compares any maps


def test_config_import_is_cheap():
    "Making a config imports the attention and layer modules it needs, never the comparison tool, matplotlib or HF interop."
    code = ("import sys; from nanoformer.config import ModelConfig; ModelConfig(); "
            "print(sorted(m for m in ('matplotlib', 'nanoformer.compare', 'nanoformer.hf_interop', 'nanoformer.cli', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == '[]', out
