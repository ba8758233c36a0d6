"""nanoGPT's own train.py beside nanoformer_train on nanoGPT's "cheap computer" config, interleaved in rounds.

    python benchmarks/nanogpt_vs.py --nanogpt PATH_TO_NANOGPT [--rounds 3] [--iters 150] [--threads 2] [--dtypes float32,bfloat16]
                                    [--full] [--out FILE]

PATH_TO_NANOGPT is a checkout of github.com/karpathy/nanoGPT (its train.py, model.py, configurator.py and config/ are
copied into a temporary folder and run from there; nothing is written into the checkout). Both read the same data:
tinyshakespeare as shipped with nanoformer, split and encoded the way nanoGPT's shakespeare_char/prepare.py does.

The config (nanoGPT's README): 4 layers, 4 heads, d_model 128, block 64, batch 12, AdamW lr 1e-3 with 100 warmup
iterations and cosine decay to 1e-4 over 2000, beta2 0.99, weight decay 0.1, clip 1, no dropout, no biases, exact GELU,
learned positions, tied embeddings, the loss read every iteration (nanoGPT's --log_interval=1).

Each round runs nanoGPT for --iters iterations, then nanoformer for as many in each of --dtypes, in separate processes, and
takes the median ms/iteration over the warm iterations (the first 10 are dropped). nanoGPT's train.py trains in fp32 on a
CPU (it autocasts only on CUDA); nanoformer runs fp32 (the same arithmetic as nanoGPT) and bf16 autocast (weights and
optimizer in fp32, matrix multiplies in bf16: fast on CPUs with bf16 matrix units, such as AMX). Printed: the medians per
round and overall, each side's speed ratio (nanoGPT ms / its ms: above 1 means faster than nanoGPT) and each process's
peak RSS, and the CPU's bf16 flags. Both sides' modules are byte-compiled first, as Python does by default: where
PYTHONDONTWRITEBYTECODE is set, compiling them at every import would leave a few MB of heap behind in each process and skew
the RSS comparison.
--full adds the loss comparison: 2000 iterations, 3 seeds each side, val loss at the end (nanoGPT's estimate: 200 batches)
and each run's wall time.
"""
import argparse, compileall, importlib.util, json, os, pickle, platform, re, shutil, statistics, subprocess, sys, tempfile, textwrap, time
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


def run(cmd: list, cwd: Path, env: dict) -> tuple[str, float, float]:
    "Run `cmd`; return its stdout, the process's peak RSS in MB (from wait4, the child alone) and its wall seconds."
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0: sys.exit(f"{cmd[1]} failed (exit {p.returncode}):\n{out[-3000:]}")
    return out, usage.ru_maxrss / 1024, time.perf_counter() - t0


def nanogpt(dst: Path, iters: int, env: dict, seed: int = 0, eval_iters: int = 20) -> dict:
    "nanoGPT's train.py (its fixed seed 1337 offset by `seed` in the temporary copy); ms/iteration and the last val loss."
    script = dst / f'train_seed{seed}.py'
    script.write_text((dst / 'train.py').read_text().replace('torch.manual_seed(1337 + seed_offset)', f'torch.manual_seed({1337 + seed} + seed_offset)'))
    out, rss, secs = run([sys.executable, script.name, *NANOGPT_ARGS, f'--max_iters={iters}', f'--eval_iters={eval_iters}',
                    f'--eval_interval={iters}'], dst, env)
    ms = [float(t) for i, t in re.findall(r'^iter (\d+): loss [\d.]+, time ([\d.]+)ms', out, re.M) if int(i) >= WARM]
    val = [float(v) for v in re.findall(r'val loss ([\d.]+)', out)]
    return dict(ms=statistics.median(ms), rss_mb=rss, val_loss=val[-1], seconds=secs)


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
    from nanoformer.config import ModelConfig
    from nanoformer.train import TrainConfig, train
    train_kw, model_kw = map(json.loads, sys.argv[1:3])
    with tempfile.TemporaryDirectory() as runs:
        res = train(TrainConfig(**train_kw, out_dir=runs), ModelConfig(**model_kw))
        rows = [json.loads(l) for l in open(f'{runs}/bench/metrics.jsonl')]
    print(json.dumps(dict(ms=[1000 * 12 * 64 / r['tokens_per_s'] for r in rows if 'tokens_per_s' in r and r['step'] > %d],
                          val_loss=res['val_loss'])))
''' % WARM)  # the configs come as JSON, so the child imports nanoformer alone, not this script and its modules


def nanoformer(iters: int, env: dict, seed: int = 0, eval_iters: int = 20, dtype: str = 'float32') -> dict:
    tc, mc = nanoformer_config(iters, seed, eval_iters, dtype=dtype)
    train_kw = {k: v for k, v in tc.to_dict().items() if k != 'out_dir'}
    out, rss, secs = run([sys.executable, '-c', NANOFORMER, json.dumps(train_kw), json.dumps(mc.to_dict())], Path.cwd(), env)
    res = json.loads(out.strip().splitlines()[-1])
    return dict(ms=statistics.median(res['ms']), rss_mb=rss, val_loss=res['val_loss'], seconds=secs)


def _cpuinfo(key: str) -> str | None:
    "The value of the first `key` line of /proc/cpuinfo, or None where there is no such line or file."
    try:
        with open('/proc/cpuinfo') as f: return next((l.split(':', 1)[1].strip() for l in f if l.startswith(key)), None)
    except OSError: return None


def cpu_name() -> str:
    "The CPU's model name (from /proc/cpuinfo where there is one)."
    return _cpuinfo('model name') or platform.processor() or platform.machine()


def cpu_bf16_flags() -> list[str]:
    "The CPU's bf16 instruction flags (amx_bf16, avx512_bf16) from /proc/cpuinfo; empty where there are none or no such file."
    flags = (_cpuinfo('flags') or '').split()
    return [f for f in ('amx_bf16', 'avx512_bf16') if f in flags]


def dtype_list(text: str) -> list[str]:
    "An argparse type: comma-separated precisions, each float32 or bfloat16 (a bad one exits with status 2, naming it)."
    bad = [d for d in text.split(',') if d not in ('float32', 'bfloat16')]
    if bad: raise argparse.ArgumentTypeError(f"{bad[0]!r} is not a precision here; use float32 and/or bfloat16, comma-separated")
    return text.split(',')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', required=True, type=Path, help="a checkout of karpathy/nanoGPT")
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--iters', type=int, default=150)
    ap.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS for both')
    ap.add_argument('--dtypes', default='float32,bfloat16', type=dtype_list, help="nanoformer's precisions, comma-separated (float32, bfloat16)")
    ap.add_argument('--full', action='store_true', help='also 2000 iterations x 3 seeds each: val loss')
    ap.add_argument('--out', type=Path, help='write the results as JSON here')
    a = ap.parse_args()
    if not (a.nanogpt / 'train.py').is_file(): sys.exit(f"error: --nanogpt {a.nanogpt} holds no train.py (a nanoGPT checkout?)")
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'WANDB_MODE': 'disabled'}
    sides = ['nanogpt', *(f'nanoformer-{d}' for d in a.dtypes)]
    res = dict(threads=a.threads, iters=a.iters, machine=f'{cpu_name()}, {os.cpu_count()} cores', cpu_bf16=cpu_bf16_flags(), sides=sides, rounds=[])
    with tempfile.TemporaryDirectory() as tmp:
        dst = prepare(a.nanogpt, Path(tmp))
        package = Path(importlib.util.find_spec('nanoformer').origin).parent
        for d in (dst, package, Path(__file__).resolve().parent): compileall.compile_dir(d, quiet=1)
        env['NANOFORMER_CACHE'] = str(Path(tmp) / 'cache')
        side = lambda s, iters, seed=0, eval_iters=20: (nanogpt(dst, iters, env, seed, eval_iters) if s == 'nanogpt' else
                                                        nanoformer(iters, env, seed, eval_iters, s.split('-')[1]))
        for r in range(a.rounds):
            res['rounds'].append({s: side(s, a.iters) for s in sides})
            g = res['rounds'][-1]['nanogpt']
            print(f"round {r}: " + '   '.join(f"{s} {x['ms']:.1f} ms/it ({x['rss_mb']:.0f} MB, ratio {g['ms'] / x['ms']:.2f})"
                                            for s, x in res['rounds'][-1].items()), flush=True)
        for s in sides:
            res[s] = dict(ms=statistics.median(r[s]['ms'] for r in res['rounds']), rss_mb=statistics.median(r[s]['rss_mb'] for r in res['rounds']))
            res[s]['ratio'] = res['nanogpt']['ms'] / res[s]['ms']
        print('median: ' + ', '.join(f"{s} {res[s]['ms']:.1f} ms/it (ratio {res[s]['ratio']:.2f}, peak RSS {res[s]['rss_mb']:.0f} MB)" for s in sides)
              + f"; CPU bf16 flags: {' '.join(res['cpu_bf16']) or 'none'}")
        if a.full:
            runs = {s: [side(s, 2000, seed, 200) for seed in range(3)] for s in sides}
            res['full'] = {s: [x['val_loss'] for x in v] for s, v in runs.items()}
            res['full_seconds'] = {s: [x['seconds'] for x in v] for s, v in runs.items()}
            for s, v in res['full'].items():
                print(f"{s:19} val loss after 2000 iterations: {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} {v}; "
                      f"{np.mean(res['full_seconds'][s]):.0f} s a run")
    if a.out: a.out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
