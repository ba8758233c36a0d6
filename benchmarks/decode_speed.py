"""Decoding speed with and without the KV cache, and the cache's bytes per token for each attention type.

    OMP_NUM_THREADS=1 python benchmarks/decode_speed.py [--contexts 256 1024] [--new 32]

For each context length: prefill a random prompt of (context - new) tokens, then decode `new` tokens greedily, once
through the cache and once recomputing the whole sequence each step. Then, per attention type, the bytes a real
cache allocates per token next to what `estimate` reports.
"""
import argparse, json, time
import torch
from nanoformer.config import ModelConfig
from nanoformer.model import GPT, estimate
from nanoformer.generate import generate


def tokens_per_s(model, prompt, new, use_cache):
    t0 = time.perf_counter()
    generate(model, prompt, new, temperature=0, use_cache=use_cache)
    return new / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--contexts', type=int, nargs='+', default=[256, 1024])
    ap.add_argument('--new', type=int, default=32)
    ap.add_argument('--d_model', type=int, default=256)
    ap.add_argument('--n_layers', type=int, default=4)
    a = ap.parse_args()
    torch.manual_seed(0)
    base = ModelConfig(vocab_size=258, d_model=a.d_model, n_layers=a.n_layers, n_heads=4, block_size=max(a.contexts))
    model = GPT(base).eval()
    for ctx in a.contexts:
        prompt = torch.randint(0, 258, (1, ctx - a.new))
        cached, full = tokens_per_s(model, prompt, a.new, True), tokens_per_s(model, prompt, a.new, False)
        print(json.dumps(dict(context=ctx, cached_tok_s=round(cached, 1), uncached_tok_s=round(full, 1), speedup=round(cached / full, 1))), flush=True)
    S = 512
    for name, kw in {'mha': {}, 'gqa (kv=2)': dict(n_kv_heads=2), 'mqa': dict(attention='mqa', n_kv_heads=1), 'window 64': dict(window=64),
                     'kv_share 2': dict(kv_share=2), 'diff': dict(attention='diff'), 'ngpt': dict(attention='ngpt'),
                     'mla': dict(attention='mla'), 'linear': dict(attention='linear')}.items():
        cfg = base.replace(block_size=S, **kw)
        m = GPT(cfg)
        measured = m.new_cache(1, S, torch.bfloat16).nbytes
        e = estimate(cfg, dtype_bytes=2)
        print(json.dumps(dict(attention=name, cache_bytes_at_512=measured, measured_bytes_per_token=measured / S,
                              estimator_kv_bytes_per_token=e['kv_bytes_per_token'], estimator_state_bytes=e['state_bytes'])), flush=True)


if __name__ == '__main__':
    main()
