"""nanoGPT's own train.py beside nanoformer_train on nanoGPT's "cheap computer" config, interleaved in rounds.

    python benchmarks/nanogpt_vs.py --nanogpt PATH_TO_NANOGPT [--rounds 3] [--iters 150] [--threads 2] [--full] [--out FILE]

PATH_TO_NANOGPT is a checkout of github.com/karpathy/nanoGPT (its train.py, model.py, configurator.py and config/ are
copied into a temporary folder and run from there; nothing is written into the checkout). Both read the same data:
tinyshakespeare as shipped with nanoformer, split and encoded the way nanoGPT's shakespeare_char/prepare.py does.

The config (nanoGPT's README): 4 layers, 4 heads, d_model 128, block 64, batch 12, AdamW lr 1e-3 with 100 warmup
iterations and cosine decay to 1e-4 over 2000, beta2 0.99, weight decay 0.1, clip 1, no dropout, no biases, exact GELU,
learned positions, tied embeddings, the loss read every iteration (nanoGPT's --log_interval=1).

Each round runs nanoGPT for --iters iterations, then nanoformer for as many, in separate processes, and takes the
median ms/iteration over the warm iterations (the first 10 are dropped). Printed: both medians per round and overall,
the speed ratio (nanoGPT ms / nanoformer ms: above 1 means nanoformer is faster) and each process's peak RSS. Both sides'
modules are byte-compiled first, as Python does by default: where PYTHONDONTWRITEBYTECODE is set, compiling them at every
import would leave a few MB of heap behind in each process and skew the RSS comparison.
--full adds the loss comparison: 2000 iterations, 3 seeds each, val loss at the end (nanoGPT's estimate: 200 batches).
"""
import argparse, compileall, importlib.util, json, os, pickle, re, shutil, statistics, subprocess, sys, tempfile, textwrap
from pathlib import Path
import numpy as np

NANOGPT_ARGS = ['config/train_shakespeare_char.py', '--device=cpu', '--compile=False', '--log_interval=1', '--block_size=64',
                '--batch_size=12', '--n_layer=4', '--n_head=4', '--n_embd=128', '--lr_decay_iters=2000', '--dropout=0.0',
                '--always_save_checkpoint=False', '--bias=False']
WARM = 10  # iterations dropped before taking the median


def prepare(nanogpt: Path, work: Path) -> Path:
    "Copy nanoGPT's scripts into `work` and write its shakespeare_char data from the shipped corpus."
    from nanoformer.data import corpus_text
    dst = work / 'nanogpt'
    dst.mkdir()
    for f in ('train.py', 'model.py', 'configurator.py'): shutil.copy(nanogpt / f, dst / f)
    shutil.copytree(nanogpt / 'config', dst / 'config')
    text = corpus_text('tinyshakespeare')
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = dst / 'data' / 'shakespeare_char'
    data.mkdir(parents=True)
    n = int(len(text) * 0.9)
    for name, part in (('train', text[:n]), ('val', text[n:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(data / f'{name}.bin')
    with open(data / 'meta.pkl', 'wb') as f: pickle.dump(dict(vocab_size=len(chars), itos=dict(enumerate(chars)), stoi=stoi), f)
    return dst


def run(cmd: list, cwd: Path, env: dict) -> tuple[str, float]:
    "Run `cmd`; return its stdout and the process's peak RSS in MB (from wait4, the child alone)."
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0: sys.exit(f"{cmd[1]} failed (exit {p.returncode}):\n{out[-3000:]}")
    return out, usage.ru_maxrss / 1024


def nanogpt(dst: Path, iters: int, env: dict, seed: int = 0, eval_iters: int = 20) -> dict:
    "nanoGPT's train.py (its fixed seed 1337 offset by `seed` in the temporary copy); ms/iteration and the last val loss."
    script = dst / f'train_seed{seed}.py'
    script.write_text((dst / 'train.py').read_text().replace('torch.manual_seed(1337 + seed_offset)', f'torch.manual_seed({1337 + seed} + seed_offset)'))
    out, rss = run([sys.executable, script.name, *NANOGPT_ARGS, f'--max_iters={iters}', f'--eval_iters={eval_iters}',
                    f'--eval_interval={iters}'], dst, env)
    ms = [float(t) for i, t in re.findall(r'^iter (\d+): loss [\d.]+, time ([\d.]+)ms', out, re.M) if int(i) >= WARM]
    val = [float(v) for v in re.findall(r'val loss ([\d.]+)', out)]
    return dict(ms=statistics.median(ms), rss_mb=rss, val_loss=val[-1])


def nanoformer_config(iters: int, seed: int = 0, eval_iters: int = 20, **train):
    "nanoGPT's config as nanoformer's (TrainConfig, ModelConfig): exact GELU, the loss logged every iteration; `train` overrides."
    from nanoformer.config import preset
    from nanoformer.train import TrainConfig
    tc = TrainConfig(dataset='tinyshakespeare', tokenizer='char', batch_size=12, max_steps=iters, lr=1e-3, warmup_steps=100,
                     min_lr_ratio=0.1, beta2=0.99, weight_decay=0.1, grad_clip=1.0, log_every=1, eval_every=iters,
                     eval_iters=eval_iters, save_every=0, seed=1337 + seed, device='cpu', run_name='bench', progress=False)
    return tc.replace(**train), preset('nanogpt-cpu', activation='gelu_exact')


NANOFORMER = textwrap.dedent('''
    import json, sys, tempfile
    sys.path.insert(0, %r)
    from nanogpt_vs import nanoformer_config
    from nanoformer.train import train
    iters, seed, eval_iters = map(int, sys.argv[1:4])
    with tempfile.TemporaryDirectory() as runs:
        tc, mc = nanoformer_config(iters, seed, eval_iters, out_dir=runs)
        res = train(tc, mc)
        rows = [json.loads(l) for l in open(f'{runs}/bench/metrics.jsonl')]
    print(json.dumps(dict(ms=[1000 * 12 * 64 / r['tokens_per_s'] for r in rows if 'tokens_per_s' in r and r['step'] > %d],
                          val_loss=res['val_loss'])))
''' % (str(Path(__file__).resolve().parent), WARM))


def nanoformer(iters: int, env: dict, seed: int = 0, eval_iters: int = 20) -> dict:
    out, rss = run([sys.executable, '-c', NANOFORMER, str(iters), str(seed), str(eval_iters)], Path.cwd(), env)
    res = json.loads(out.strip().splitlines()[-1])
    return dict(ms=statistics.median(res['ms']), rss_mb=rss, val_loss=res['val_loss'])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', required=True, type=Path, help="a checkout of karpathy/nanoGPT")
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--iters', type=int, default=150)
    ap.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS for both')
    ap.add_argument('--full', action='store_true', help='also 2000 iterations x 3 seeds each: val loss')
    ap.add_argument('--out', type=Path, help='write the results as JSON here')
    a = ap.parse_args()
    if not (a.nanogpt / 'train.py').is_file(): sys.exit(f"error: --nanogpt {a.nanogpt} holds no train.py (a nanoGPT checkout?)")
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'WANDB_MODE': 'disabled'}
    res = dict(threads=a.threads, iters=a.iters, rounds=[])
    with tempfile.TemporaryDirectory() as tmp:
        dst = prepare(a.nanogpt, Path(tmp))
        package = Path(importlib.util.find_spec('nanoformer').origin).parent
        for d in (dst, package, Path(__file__).resolve().parent): compileall.compile_dir(d, quiet=1)
        env['NANOFORMER_CACHE'] = str(Path(tmp) / 'cache')
        for r in range(a.rounds):
            g, n = nanogpt(dst, a.iters, env), nanoformer(a.iters, env)
            res['rounds'].append(dict(nanogpt=g, nanoformer=n))
            print(f"round {r}: nanoGPT {g['ms']:.1f} ms/it ({g['rss_mb']:.0f} MB)   nanoformer {n['ms']:.1f} ms/it ({n['rss_mb']:.0f} MB)   "
                  f"ratio {g['ms'] / n['ms']:.2f}", flush=True)
        for side in ('nanogpt', 'nanoformer'):
            res[side] = dict(ms=statistics.median(r[side]['ms'] for r in res['rounds']), rss_mb=max(r[side]['rss_mb'] for r in res['rounds']))
        res['ratio'] = res['nanogpt']['ms'] / res['nanoformer']['ms']
        print(f"median: nanoGPT {res['nanogpt']['ms']:.1f} ms/it, nanoformer {res['nanoformer']['ms']:.1f} ms/it, "
              f"ratio {res['ratio']:.2f} (nanoGPT ms / nanoformer ms); peak RSS {res['nanogpt']['rss_mb']:.0f} vs {res['nanoformer']['rss_mb']:.0f} MB")
        if a.full:
            res['full'] = {'nanogpt': [nanogpt(dst, 2000, env, s, 200)['val_loss'] for s in range(3)],
                           'nanoformer': [nanoformer(2000, env, s, 200)['val_loss'] for s in range(3)]}
            for side, v in res['full'].items(): print(f"{side:10} val loss after 2000 iterations: {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} {v}")
    if a.out: a.out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
