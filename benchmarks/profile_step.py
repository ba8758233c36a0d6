"""Where a training step's time goes at nanoGPT's small CPU config.

    python benchmarks/profile_step.py [--threads 2] [--steps 40] [--repeats 3] [--dtypes float32,bfloat16]
                                      [--out results/benchmarks/profile_step.json]

Runs `nanoformer.train.profile_steps` (torch.profiler regions: data, forward, backward, optimizer, and the loop's overhead;
the unprofiled step time; time in matrix multiplies; minor page faults per step) in `--repeats` fresh processes for each of
`--dtypes` (fp32, and bf16 autocast) and prints (with --out stores) the median of each field, with the model's FLOPs per
step and the rate each step reaches.
The config is nanogpt_vs.py's: char tinyshakespeare, 4 layers, 4 heads, d_model 128, block 64, batch 12.
"""
import argparse, json, os, statistics, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from nanogpt_vs import cpu_name, dtype_list, nanoformer_config
CHILD = '''
import json, sys
sys.path.insert(0, {here!r})
from nanoformer.train import profile_steps
from nanogpt_vs import nanoformer_config
tc, mc = nanoformer_config(1, dtype={dtype!r})
print(json.dumps(profile_steps(tc, mc, steps={steps})))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=40)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--dtypes', default='float32,bfloat16', type=dtype_list, help='comma-separated: float32, bfloat16')
    ap.add_argument('--out', type=Path)
    a = ap.parse_args()
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'WANDB_MODE': 'disabled'}
    from nanoformer.model import estimate
    tc, mc = nanoformer_config(1)
    gflop = estimate(mc)['flops_per_token'] * tc.batch_size * mc.block_size / 1e9
    prof = {}
    for dtype in a.dtypes:
        rows = []
        for r in range(a.repeats):
            out = subprocess.run([sys.executable, '-c', CHILD.format(here=str(HERE), steps=a.steps, dtype=dtype)], env=env, capture_output=True, text=True)
            if out.returncode: sys.exit(f"profile_steps failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{dtype} repeat {r}: " + ' '.join(f"{k} {v:.1f}" for k, v in rows[-1].items()), flush=True)
        prof[dtype] = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
        print(f"{dtype} median: " + ' '.join(f"{k} {v:.1f}" for k, v in prof[dtype].items())
              + f"; {gflop:.2f} GFLOP per step, {gflop / prof[dtype]['step_ms'] * 1000:.0f} GFLOP/s")
    res = dict(threads=a.threads, steps=a.steps, repeats=a.repeats, machine=f"{cpu_name()}, {os.cpu_count()} cores",
               gflop_per_step=gflop, profile=prof)
    if a.out: a.out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
