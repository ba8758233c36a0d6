"""Training throughput and peak memory: fp32 vs bf16 autocast, with and without gradient checkpointing and torch.compile.

Each configuration runs in its own process (peak RSS is per process; on CUDA, torch's peak allocated memory),
does `--warmup` untimed steps (compilation happens there) and `--steps` timed AdamW steps on random tokens.

    python benchmarks/training_speed.py                         # CPU, a small model
    python benchmarks/training_speed.py --device cuda --preset gpt2-small --batch_size 16 --block_size 1024

On CUDA it also prints model FLOPs utilisation (MFU) against --peak_tflops (H100 SXM bf16 dense: 989).
"""
import argparse, itertools, json, resource, subprocess, sys, time


def run_one(a):
    import torch
    from nanoformer.config import preset, ModelConfig
    from nanoformer.model import GPT, estimate
    from nanoformer.train import apply_gradient_checkpointing, autocast
    dev = torch.device(a.device)
    mc = preset(a.preset, block_size=a.block_size) if a.preset else ModelConfig(d_model=a.d_model, n_layers=a.n_layers, n_heads=a.n_heads, block_size=a.block_size, vocab_size=258)
    torch.manual_seed(0)
    model = GPT(mc).to(dev)
    if a.ckpt: apply_gradient_checkpointing(model)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=1e-4, fused=dev.type == 'cuda')
    x = torch.randint(0, mc.vocab_size, (a.batch_size, mc.block_size), device=dev)
    def step():
        with autocast(dev, a.dtype): loss = fwd(x, x).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(a.warmup): step()
    if dev.type == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps): step()
    if dev.type == 'cuda': torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    tok_s = a.batch_size * mc.block_size / dt
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = dict(dtype=a.dtype, grad_ckpt=a.ckpt, compile=a.compile, ms_per_step=round(1000 * dt, 1), tokens_per_s=round(tok_s),
               peak_mem_mb=round(peak), params=model.num_params())
    if dev.type == 'cuda': row['mfu'] = round(estimate(mc)['flops_per_token'] * tok_s / (a.peak_tflops * 1e12), 3)
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--preset', default=None)
    ap.add_argument('--d_model', type=int, default=256)
    ap.add_argument('--n_layers', type=int, default=4)
    ap.add_argument('--n_heads', type=int, default=4)
    ap.add_argument('--block_size', type=int, default=256)
    ap.add_argument('--batch_size', type=int, default=8)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--peak_tflops', type=float, default=989.0)
    ap.add_argument('--no_compile', action='store_true', help='skip the torch.compile configurations')
    ap.add_argument('--one', nargs=3, metavar=('DTYPE', 'CKPT', 'COMPILE'), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        a.dtype, a.ckpt, a.compile = a.one[0], a.one[1] == '1', a.one[2] == '1'
        return run_one(a)
    passthrough = [f for f in sys.argv[1:] if f != '--no_compile']
    for dtype, ckpt, comp in itertools.product(('float32', 'bfloat16'), (0, 1), (0,) if a.no_compile else (0, 1)):
        r = subprocess.run([sys.executable, __file__, *passthrough, '--one', dtype, str(ckpt), str(comp)], capture_output=True, text=True)
        print(r.stdout.strip() or f'{{"dtype": "{dtype}", "grad_ckpt": {bool(ckpt)}, "compile": {bool(comp)}, "error": {json.dumps(r.stderr.strip().splitlines()[-1:])}}}', flush=True)


if __name__ == '__main__':
    main()
