"""Causal attention's forward + backward on the CPU: the fused kernel in fp32, fp16 and bf16, and `attend`'s bf16 training path.

    python benchmarks/attention_cpu.py [--threads 2] [--repeats 5] [--out results/benchmarks/attention_cpu.json]

The shape is nanoGPT's small CPU config (batch 12, 4 heads, 64 tokens, head size 32). Each repeat times 50 calls after 5
warm-up calls and the median over repeats is printed (with --out, stored). This is the measurement behind `attend` running
bf16/fp16 training on the CPU in fp32 (`nanoformer.attention.upcast_for_cpu`).
"""
import argparse, json, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
from nanoformer.attention import attend


def per_call_ms(fn, q, k, v, calls: int = 50) -> float:
    "Milliseconds per forward + backward of `fn(q, k, v)` against a fixed upstream gradient."
    g = torch.randn_like(q)
    for _ in range(5): fn(q, k, v).backward(g)
    t = time.perf_counter()
    for _ in range(calls): fn(q, k, v).backward(g)
    return (time.perf_counter() - t) / calls * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out', type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, H, T, E = 12, 4, 64, 32
    pos = torch.arange(T).expand(B, T)
    fused = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    paths = {'fused kernel, fp32': (fused, torch.float32), 'fused kernel, fp16': (fused, torch.float16), 'fused kernel, bf16': (fused, torch.bfloat16),
             '`attend`, bf16 (upcast to fp32)': (lambda q, k, v: attend(q, k, v, pos, pos)[0], torch.bfloat16)}
    times = {name: [] for name in paths}
    for r in range(a.repeats):
        for name, (fn, dtype) in paths.items():
            q, k, v = (torch.randn(B, H, T, E, dtype=dtype, requires_grad=True) for _ in range(3))
            times[name].append(per_call_ms(fn, q, k, v))
    res = dict(threads=a.threads, repeats=a.repeats, torch=torch.__version__, shape=dict(B=B, H=H, T=T, E=E),
               ms={name: statistics.median(t) for name, t in times.items()})
    for name, ms in res['ms'].items(): print(f"{name:34} {ms:.2f} ms per forward + backward")
    if a.out: a.out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
