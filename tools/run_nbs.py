"""Re-execute notebooks in place so their stored outputs (rendered on the docs site) match the code.

    python tools/run_nbs.py nbs/31_kv_cache.ipynb [more.ipynb ...]

Runs every code cell in the notebook's folder, as `nbdev_test` does (cells marked `#| eval: false` or with a
flag from settings.ini's `tst_flags` are skipped, as in CI), stops at the first error, then writes the notebook
and runs `nbdev_clean` on it. Pass `progress=False` where a cell would print a progress bar.
"""
import os, re, sys, time
from pathlib import Path

os.environ.setdefault('WANDB_MODE', 'offline')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config

SKIP_FLAGS = set(get_config().get('tst_flags', '').split())


def _skip(cell) -> bool:
    "True for a cell not to run: markdown, `eval: false`, or a flagged (slow) cell."
    if cell.cell_type != 'code': return True
    directives = dict(re.findall(r'^#\|[ \t]*([\w-]+:?)[ \t]*(.*)$', cell.source, re.M))
    if directives.get('eval:', '').strip().lower() == 'false': return True
    return bool(SKIP_FLAGS & directives.keys())


def _drop_bars(nb):
    "Remove stderr streams of progress-bar frames (third-party bars, e.g. the datasets library's), and outputs of non-code cells."
    for cell in nb.cells:
        if cell.cell_type != 'code':  # nbformat: only code cells carry outputs
            cell.pop('outputs', None); cell.pop('execution_count', None); continue
        outs = cell.get('outputs', [])
        cell['outputs'] = [o for o in outs if not (o.get('name') == 'stderr' and '|' in ''.join(o.get('text', [])) and '\r' in ''.join(o.get('text', [])))]


def run(path: Path):
    t0 = time.time()
    nb = read_nb(path)
    shell = CaptureShell(path)
    with working_directory(path.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=_skip)
        except Exception:
            sys.stderr.write(shell.prettytb(fname=path) + '\n'); raise SystemExit(f'{path}: failed; notebook left unchanged')
    _drop_bars(nb)
    write_nb(nb, path)
    os.system(f'nbdev_clean --fname {path}')
    print(f'{path}: {time.time() - t0:.0f}s')


if __name__ == '__main__':
    for p in sys.argv[1:]: run(Path(p).resolve())
