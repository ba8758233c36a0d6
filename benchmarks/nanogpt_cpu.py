"""nanoGPT's "cheap computer" run, on nanoformer.

nanoGPT's README: char-level tinyshakespeare, 4 layers, 4 heads, d_model 128, block 64, batch 12, 2000 iterations,
lr 1e-3 (its shakespeare_char config: warmup 100, cosine to 1e-4, beta2 0.99, weight decay 0.1, clip 1.0, no bias,
no dropout) -> val loss ~1.88 in ~3 minutes on a laptop CPU.

    python benchmarks/nanogpt_cpu.py [--steps 2000] [--threads N]

tinyshakespeare ships with the package: nothing to download.
Prints ms/iteration, tokens/s, peak memory and the final val loss.
"""
import argparse, json, resource, sys, tempfile, time
import torch
from nanoformer.config import preset
from nanoformer.train import TrainConfig, train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=2000)
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch decides)')
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--out', default=None, help='write the result as JSON here')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    mc = preset('nanogpt-cpu')
    with tempfile.TemporaryDirectory() as runs:
        tc = TrainConfig(dataset='tinyshakespeare', tokenizer='char', batch_size=12, max_steps=a.steps, lr=1e-3,
                         warmup_steps=100, min_lr_ratio=0.1, beta2=0.99, weight_decay=0.1, grad_clip=1.0,
                         eval_every=250, eval_iters=20, save_every=0, log_every=50, seed=a.seed, device='cpu',
                         out_dir=runs, run_name='nanogpt-cpu', progress=sys.stderr.isatty())
        res = train(tc, mc)
    ms = 1000 * res['seconds'] / a.steps
    out = dict(config='nanogpt-cpu', steps=a.steps, threads=torch.get_num_threads(), params=res['params'],
               ms_per_iter=round(ms, 2), tokens_per_s=round(res['tokens_per_s']), seconds=round(res['seconds'], 1),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               final_val_loss=round(res['val_loss'], 4), final_train_loss=round(res['train_loss'], 4))
    print(json.dumps(out, indent=1))
    if a.out: open(a.out, 'w').write(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
