"""Faults a run must survive without losing or corrupting a checkpoint: a second run on the same directory, a disk that fills
up during a save, SIGKILL in the middle of writing or pruning a checkpoint, and weights that stop being finite."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

ARGS = ['--d_model', '32', '--n_layers', '1', '--n_heads', '2', '--block_size', '16', '--batch_size', '4', '--eval_iters', '1',
        '--eval_every', '0', '--log_every', '1', '--lr', '3e-3', '--no-progress']
EXACT = ('loss', 'lr', 'grad_norm', 'pad_frac')  # the deterministic fields of a training row (not timings)

# Runs nanoformer_train with faults planted at the checkpoint of step argv[2]:
#   write: the weights are written into the checkpoint's temporary directory, then the process SIGKILLs itself
#   prune: the checkpoint is written, and the process SIGKILLs itself while deleting the oldest one (keep_last)
#   inf:   after optimizer step argv[2], one weight becomes inf (the loss that drove the update was finite)
WRAPPER = """
import os, shutil, signal, sys, torch
import nanoformer.train as train
from nanoformer.cli import nanoformer_train

mode, at = sys.argv[1], int(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
save_checkpoint, save_weights, rmtree = train.save_checkpoint, train.save_weights, shutil.rmtree

def save_checkpoint_with_fault(run_dir, step, *args, **kw):
    if step == at and mode == 'write': train.save_weights = lambda *a, **k: (save_weights(*a, **k), die())
    if step == at and mode == 'prune': shutil.rmtree = lambda p, *a, **k: die() if '.trash' in str(p) else rmtree(p, *a, **k)
    return save_checkpoint(run_dir, step, *args, **kw)
train.save_checkpoint = save_checkpoint_with_fault

if mode == 'inf':
    after, calls = train.GPT.after_optimizer_step, [0]
    def poisoned(self):
        after(self); calls[0] += 1
        if calls[0] == at:
            with torch.no_grad(): self.lm_head.weight[0, 0] = float('inf')
    train.GPT.after_optimizer_step = poisoned
nanoformer_train(sys.argv[3:])
"""


def console(*args, env=None, **kw):
    return subprocess.run([shutil.which('nanoformer_train'), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=env or os.environ.copy(), **kw)


def with_fault(tmp_path, mode, at, *args):
    script = tmp_path / 'with_fault.py'
    script.write_text(WRAPPER)
    return subprocess.run([sys.executable, script, mode, str(at), *map(str, args)], capture_output=True, text=True, timeout=600)


def rows(run: Path) -> list[dict]: return [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]


def one_error_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert 'Traceback' not in err and lines and lines[-1].startswith('error: '), err[-3000:]
    return lines[-1]


def finite_files(root: Path) -> list[Path]:
    "Every weights file and trainer state under `root` holds only finite floats; returns the files checked."
    files = sorted(root.rglob('model.safetensors')) + sorted(root.rglob('trainer_state.pt'))
    for f in files:
        tensors = load_file(f).values() if f.suffix == '.safetensors' else _tensors(torch.load(f, weights_only=True))
        assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()), f
    return files


def _tensors(obj):
    if torch.is_tensor(obj): yield obj
    elif isinstance(obj, dict): yield from (t for v in obj.values() for t in _tensors(v))
    elif isinstance(obj, (list, tuple)): yield from (t for v in obj for t in _tensors(v))


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    "The uninterrupted reference run: 12 steps, a checkpoint every 3, the newest 2 kept."
    root = tmp_path_factory.mktemp('faults')
    corpus = root / 'corpus.txt'
    corpus.write_text(''.join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(1500)))
    common = ['--dataset', corpus, *ARGS, '--max_steps', 12, '--save_every', 3, '--keep_last', 2]
    env = dict(os.environ, NANOFORMER_CACHE=str(root / 'cache'), HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    r = console(*common, '--out_dir', root / 'runs', '--run_name', 'straight', env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(common=common, run=root / 'runs' / 'straight')


# ------------------------------------------------------------------------------------------------------ one writer per run
def test_second_run_on_a_busy_directory_is_refused(tmp_path, straight):
    "While a run trains, a second run on its directory — fresh or resuming — is refused in one line naming the first's pid."
    run = tmp_path / 'runs' / 'busy'
    first = subprocess.Popen([shutil.which('nanoformer_train'), *map(str, [*straight['common'], '--max_steps', 100000, '--save_every', 5,
                              '--out_dir', tmp_path / 'runs', '--run_name', 'busy'])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not list((run / 'checkpoints').glob('step_*')):
            assert first.poll() is None and time.time() - t0 < 120, first.stderr.read() if first.poll() is not None else 'timed out'
            time.sleep(0.1)
        for extra in ([], ['--resume_from_checkpoint']):
            r = console(*straight['common'], '--out_dir', tmp_path / 'runs', '--run_name', 'busy', *extra)
            assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
            assert f"is in use by another run (pid {first.pid})" in one_error_line(r.stderr) and r.stderr.count('\n') == 1, r.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, err[-2000:]
    steps = [row['step'] for row in rows(run) if 'loss' in row]
    assert steps == list(range(1, len(steps) + 1)), steps  # one writer: every step logged once, in order
    ckpts = sorted((run / 'checkpoints').iterdir())
    assert [p.name for p in ckpts][-1] == f'step_{steps[-1]:07d}' and not any(p.name.startswith('.') for p in ckpts), ckpts
    from nanoformer.model import from_pretrained
    for ck in ckpts: from_pretrained(ck)  # every checkpoint the first run left loads


def test_runs_started_together_get_their_own_directories(tmp_path, straight):
    "Default run names carry a random suffix and are created exclusively: two runs started at once never share one."
    args = [shutil.which('nanoformer_train'), *map(str, [*straight['common'], '--max_steps', 2, '--out_dir', tmp_path / 'runs'])]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1000:] for _, e in results]
    dirs = sorted((tmp_path / 'runs').iterdir())
    assert len(dirs) == 2 and all((d / 'checkpoints' / 'step_0000002').is_dir() for d in dirs), dirs


# -------------------------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def small_disk(tmp_path):
    "A 1 MiB tmpfs (room for three checkpoints of the tiny model); needs root to mount."
    if os.geteuid() != 0: pytest.skip('mounting a small tmpfs needs root')
    disk = tmp_path / 'disk'
    disk.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(disk)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs here: {r.stderr.strip()}')
    try: yield disk
    finally: subprocess.run(['umount', '-l', str(disk)], check=True)


def test_disk_fills_during_a_save(small_disk, straight):
    "The save that does not fit fails in one line with exit status 1; its temporary directory is gone and the last checkpoint loads."
    r = console(*straight['common'], '--max_steps', 40, '--save_every', 1, '--keep_last', 0, '--out_dir', small_disk, '--run_name', 'full')
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    line = one_error_line(r.stderr)
    assert 'no space left on device' in line.lower(), line
    ckpts = small_disk / 'full' / 'checkpoints'
    assert not [p for p in ckpts.iterdir() if p.name.startswith('.')], list(ckpts.iterdir())  # no debris
    from nanoformer.model import from_pretrained
    from nanoformer.train import latest_checkpoint
    last = latest_checkpoint(small_disk / 'full')
    if 'last good checkpoint' in line: assert line.endswith(str(last)), (line, last)
    from_pretrained(last)
    assert torch.load(last / 'trainer_state.pt', weights_only=True)['step'] == int(last.name.split('_')[1])


# -------------------------------------------------------------------------------------------------------- SIGKILL mid-save
@pytest.mark.parametrize('mode', ['write', 'prune'])
def test_sigkill_mid_save_then_resume(tmp_path, straight, mode):
    "Killed while writing (or pruning) the step-9 checkpoint: the restart removes the debris and ends bit for bit as the straight run."
    out = ['--out_dir', tmp_path / 'runs', '--run_name', 'k']
    r = with_fault(tmp_path, mode, 9, *straight['common'], *out)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    run, ckpts = tmp_path / 'runs' / 'k', tmp_path / 'runs' / 'k' / 'checkpoints'
    debris = sorted(p.name for p in ckpts.iterdir() if p.name.startswith('.'))
    assert len(debris) == 1 and debris[0].startswith('.step_0000009.tmp' if mode == 'write' else '.step_0000003.trash'), debris
    r = console(*straight['common'], *out, '--resume_from_checkpoint')
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"removed {debris[0]}" in r.stderr, r.stderr  # said in one notice line
    assert sorted(p.name for p in ckpts.iterdir()) == ['step_0000009', 'step_0000012']
    reference = {row['step']: row for row in rows(straight['run']) if 'loss' in row}
    resumed = [row for row in rows(run) if 'loss' in row]
    assert sorted({row['step'] for row in resumed}) == list(range(1, 13))
    for row in resumed: assert {k: row[k] for k in EXACT} == {k: reference[row['step']][k] for k in EXACT}, row
    a, b = load_file(ckpts / 'step_0000012' / 'model.safetensors'), load_file(straight['run'] / 'checkpoints' / 'step_0000012' / 'model.safetensors')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------------- non-finite runs
@pytest.mark.parametrize('fault', ['lr 1e30', 'inf weights after step 3'])
def test_non_finite_run_leaves_only_finite_files(tmp_path, straight, fault):
    "A run whose weights or losses stop being finite ends with exit status 1 naming its last good checkpoint; nothing non-finite is on disk."
    out = ['--max_steps', 10, '--save_every', 1, '--keep_last', 0, '--out_dir', tmp_path / 'runs', '--run_name', 'n']
    if fault == 'lr 1e30': r = console(*straight['common'], *out, '--lr', '1e30')
    else: r = with_fault(tmp_path, 'inf', 3, *straight['common'], *out)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    line = one_error_line(r.stderr)
    from nanoformer.train import latest_checkpoint
    last = latest_checkpoint(tmp_path / 'runs' / 'n')
    assert line.endswith(f"last good checkpoint: {last}"), (line, last)
    if fault != 'lr 1e30': assert last.name == 'step_0000002' and 'stopping at step 3: the weights' in line, line
    assert len(finite_files(tmp_path / 'runs')) >= 2
