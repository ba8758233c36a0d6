"""Greedy decoding speed: nanoformer's `generate` vs Hugging Face transformers' `generate`, on the same weights.

A ~10M-parameter Llama-style model (d_model 384, 6 layers, 6 query heads over 2 KV heads, vocab 4096, random weights)
is exported with `nanoformer.hf_interop.export_hf` and loaded with `transformers.LlamaForCausalLM`. Both decode
`--new_tokens` tokens greedily from the same prompt at batch 1 on the CPU; the tokens must agree. Each side is timed
`--repeats` times after one warm-up run; the best time counts.

    python benchmarks/hf_generate.py [--new_tokens 256] [--prompt_len 16] [--repeats 3] [--threads N] [--out result.json]

Needs `pip install transformers`. Prints tokens/s of both and the ratio ours / transformers.
"""
import argparse, json, tempfile, time
from pathlib import Path
import torch
from nanoformer.config import ModelConfig
from nanoformer.model import GPT
from nanoformer.generate import generate
from nanoformer.hf_interop import export_hf


def best_seconds(fn, repeats: int):
    "Run `fn` once to warm up, then `repeats` times; return the last result and the fastest wall time."
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return out, min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--new_tokens', type=int, default=256)
    ap.add_argument('--prompt_len', type=int, default=16)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: as is)')
    ap.add_argument('--out', default=None, help='write the result as JSON here')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    from transformers import LlamaForCausalLM
    from transformers.utils import logging
    logging.disable_progress_bar()

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4096, d_model=384, n_layers=6, n_heads=6, n_kv_heads=2, block_size=512, init_std=0.1)
    ours = GPT(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, a.prompt_len))
    with tempfile.TemporaryDirectory() as d:
        theirs = LlamaForCausalLM.from_pretrained(export_hf(ours, Path(d) / 'm')).eval()
    ours_tokens, ours_s = best_seconds(lambda: generate(ours, prompt, a.new_tokens, temperature=0), a.repeats)
    with torch.no_grad():
        hf_tokens, hf_s = best_seconds(lambda: theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=a.new_tokens,
                                                               min_new_tokens=a.new_tokens, do_sample=False), a.repeats)
    res = dict(params=ours.num_params(), new_tokens=a.new_tokens, prompt_len=a.prompt_len, threads=torch.get_num_threads(),
               torch=torch.__version__, transformers=__import__('transformers').__version__,
               same_tokens=bool(torch.equal(ours_tokens, hf_tokens)),
               ours_tokens_per_s=round(a.new_tokens / ours_s, 1), transformers_tokens_per_s=round(a.new_tokens / hf_s, 1),
               ratio_ours_over_transformers=round(hf_s / ours_s, 2))
    print(json.dumps(res, indent=1))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
