"""Every attention / normalisation variant at the same width and depth, side by side.

For each variant: parameters, KV-cache bytes per token (bf16), training tokens/s and val loss after the same number
of steps on char-level tinyshakespeare (shipped with the package).

    OMP_NUM_THREADS=1 python benchmarks/variants.py [--steps 300] [--d_model 64] [--n_layers 4] [--out results.json]
"""
import argparse, json, sys, tempfile
import torch
from nanoformer.config import ModelConfig
from nanoformer.model import estimate
from nanoformer.train import TrainConfig, train

VARIANTS = {
    'mha': dict(),
    'gqa (kv=2)': dict(n_kv_heads=2),
    'mqa': dict(attention='mqa', n_kv_heads=1),
    'window 16': dict(window=16),
    'LLLG window 16': dict(window=16, window_pattern='LLLG'),
    'kv_share 2': dict(kv_share=2),
    'diff': dict(attention='diff'),
    'ngpt': dict(attention='ngpt'),
    'linear': dict(attention='linear'),
    'mla': dict(attention='mla'),
    'headsim jsd 0.1': dict(head_sim_loss=True, head_sim_loss_type='jsd', head_sim_loss_weight=0.1),
    'share block / 2': dict(share='block', share_group=2),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--d_model', type=int, default=64)
    ap.add_argument('--n_layers', type=int, default=4)
    ap.add_argument('--n_heads', type=int, default=4)
    ap.add_argument('--block_size', type=int, default=64)
    ap.add_argument('--batch_size', type=int, default=16)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--only', nargs='*', help='run only these variants')
    ap.add_argument('--out', default=None)
    a = ap.parse_args()
    rows = []
    for name, kw in VARIANTS.items():
        if a.only and name not in a.only: continue
        mc = ModelConfig(vocab_size=67, d_model=a.d_model, n_layers=a.n_layers, n_heads=a.n_heads, block_size=a.block_size, **kw)
        lr = a.lr * (3 if kw.get('attention') == 'ngpt' else 1)  # nGPT wants a larger lr at this scale (11_ngpt)
        with tempfile.TemporaryDirectory() as runs:
            tc = TrainConfig(dataset='tinyshakespeare', tokenizer='char', batch_size=a.batch_size, max_steps=a.steps, lr=lr,
                             warmup_ratio=0.0 if kw.get('attention') == 'ngpt' else 0.05, eval_every=0, eval_iters=20,
                             save_every=0, log_every=50, seed=0, device='cpu', out_dir=runs, run_name='v', progress=False)
            res = train(tc, mc)
        e = estimate(mc)
        rows.append(dict(variant=name, params=e['params'], kv_bytes_per_token_bf16=e['kv_bytes_per_token'],
                         tokens_per_s=round(res['tokens_per_s']), val_loss=round(res['val_loss'], 4), lr=lr))
        print(f"{name:18} params {e['params']:>8,}  kv B/tok {e['kv_bytes_per_token']:>6}  tok/s {res['tokens_per_s']:>8,.0f}  val {res['val_loss']:.4f}",
              flush=True)
    if a.out: open(a.out, 'w').write(json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()
