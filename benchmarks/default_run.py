"""The README's first command, timed: `nanoformer_train --run_name first` with every default, then its sample.

    env -u OMP_NUM_THREADS python benchmarks/default_run.py [--out results/default_run.json]

Runs in a fresh temporary folder (its own token cache too, so tokenizing the corpus is part of the time, as for a
new user), and prints (and with --out stores) wall-clock seconds, the final validation loss, peak memory, and
the sample the README's `nanoformer_generate --checkpoint_path runs/first --prompt "def "` gives (its default sampling,
temperature 0.8, with `--seed 0` so that the stored sample can be reproduced). The README renders its numbers from the stored file.
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from datetime import date
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nanogpt_vs import cpu_name

PROMPT = 'def '


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=None, help='write the result as JSON here')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, 'NANOFORMER_CACHE': os.path.join(tmp, 'cache')}
        t0 = time.time()
        subprocess.run([shutil.which('nanoformer_train'), '--run_name', 'first', '--no-progress'], cwd=tmp, env=env, check=True)
        seconds = time.time() - t0
        rows = [json.loads(l) for l in open(os.path.join(tmp, 'runs', 'first', 'metrics.jsonl'))]
        val = [r['val_loss'] for r in rows if 'val_loss' in r]
        sample = subprocess.run([shutil.which('nanoformer_generate'), '--checkpoint_path', 'runs/first', '--prompt', PROMPT,
                                 '--seed', '0'],
                                cwd=tmp, env=env, check=True, capture_output=True, text=True).stdout
    out = dict(command='nanoformer_train --run_name first', seconds=round(seconds, 1), final_val_loss=round(val[-1], 4),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), sample_prompt=PROMPT,
               sample=sample, sample_seed=0, cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
               python=platform.python_version(), machine=platform.machine(), cpu=cpu_name(), date=date.today().isoformat())
    print(json.dumps(out, indent=1))
    if a.out: open(a.out, 'w').write(json.dumps(out, indent=1) + '\n')


if __name__ == '__main__': main()
