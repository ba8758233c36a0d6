"Training that holds up: signals, crashes mid-save, and distributed runs."
import json, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from conftest import run_cli

TINY = '--d_model 32 --n_layers 2 --n_heads 2 --block_size 32 --batch_size 4 --eval_iters 2 --lr 3e-3 --no-progress'.split()


def start(args):
    return subprocess.Popen([shutil.which('nanoformer_train'), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())


def wait_for(pred, timeout=120):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, 'timed out'
        time.sleep(0.05)


def logged_steps(run):
    f = run / 'metrics.jsonl'
    return [json.loads(l)['step'] for l in f.read_text().splitlines()] if f.exists() else []


def test_sigterm_saves_a_fresh_checkpoint(tmp_path, corpus):
    run = tmp_path / 'runs' / 't'
    p = start(['--dataset', corpus, *TINY, '--max_steps', 100000, '--save_every', 0, '--log_every', 1,
               '--out_dir', tmp_path / 'runs', '--run_name', 't'])
    wait_for(lambda: len(logged_steps(run)) >= 5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    ckpts = sorted((run / 'checkpoints').iterdir())
    assert len(ckpts) == 1 and int(ckpts[0].name.split('_')[1]) >= 5, ckpts
    assert 'SIGTERM' in err


def test_sigkill_while_saving_then_resume(tmp_path, corpus):
    "Saving every step, SIGKILL lands mid-save most of the time; the last complete checkpoint must load and resume."
    run = tmp_path / 'runs' / 'k'
    base = ['--dataset', corpus, *TINY, '--save_every', 1, '--keep_last', 2, '--log_every', 1, '--out_dir', tmp_path / 'runs', '--run_name', 'k']
    args = [*base, '--max_steps', 100000]
    random.seed(0)
    for attempt in range(3):
        p = start(args if attempt == 0 else [*args, '--resume_from_checkpoint'])
        before = max(logged_steps(run), default=0)
        wait_for(lambda: max(logged_steps(run), default=0) >= before + 3)
        time.sleep(random.random() * 0.2)
        p.kill(); p.communicate()
    leftovers = [p.name for p in (run / 'checkpoints').iterdir() if p.name.startswith('.')]
    print('partial saves left by SIGKILL:', leftovers)
    r = run_cli('nanoformer_train', *base, '--resume_from_checkpoint', '--max_steps', max(logged_steps(run)) + 3)
    assert r.returncode == 0, r.stderr
    g = run_cli('nanoformer_generate', '--checkpoint_path', run, '--prompt', 'def', '--max_new_tokens', 5)
    assert g.returncode == 0, g.stderr


def distributed_args(corpus, tmp_path):
    "A tiny run both ways: 1 process with batch 8, or torchrun with 2 gloo processes of batch 4 (the same global batch)."
    return list(map(str, ['--dataset', corpus, '--d_model', 32, '--n_layers', 2, '--n_heads', 2, '--block_size', 32, '--max_steps', 6,
                          '--log_every', 1, '--eval_every', 0, '--eval_iters', 2, '--lr', 3e-3, '--no-progress', '--device', 'cpu',
                          '--out_dir', tmp_path / 'runs', '--save_every', 3]))


def one_process(common, name, *extra):
    r = run_cli('nanoformer_train', *common, '--batch_size', 8, '--run_name', name, *extra)
    assert r.returncode == 0, r.stderr


def two_processes(common, name, *extra):
    cmd = [shutil.which('torchrun'), '--nproc_per_node', '2', '--no-python', shutil.which('nanoformer_train'),
           *common, '--batch_size', '4', '--run_name', name, *map(str, extra)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]


def losses(tmp_path, name):
    return [r['loss'] for r in map(json.loads, (tmp_path / 'runs' / name / 'metrics.jsonl').read_text().splitlines()) if 'loss' in r]


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed unavailable')
@pytest.mark.parametrize('fsdp', [False, True], ids=['ddp', 'fsdp'])
def test_two_processes_match_one_and_resume_across_world_sizes(tmp_path, corpus, fsdp):
    "DDP or FSDP2 over 2 gloo processes = 1 process with the same global batch; checkpoints resume at the other world size."
    common, flag = distributed_args(corpus, tmp_path), ['--fsdp'] if fsdp else []
    one_process(common, 'one')
    two_processes(common, 'two', *flag)
    a, b = losses(tmp_path, 'one'), losses(tmp_path, 'two')
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    one_process(common, 'two', '--resume_from_checkpoint', '--max_steps', '8')   # 2-process checkpoint, 1 process
    two_processes(common, 'one', *flag, '--resume_from_checkpoint', '--max_steps', 8)  # and the other way round


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed unavailable')
def test_segment_memory_under_ddp_matches_one_process(tmp_path, corpus):
    "With --mem_len each DDP rank keeps the memory of its own stream rows: 2 processes of 4 rows = 1 process of 8 rows, step for step."
    common = distributed_args(corpus, tmp_path) + ['--mem_len', '32', '--gradient_accumulation_steps', '2']
    one_process(common, 'one')
    two_processes(common, 'two')
    a, b = losses(tmp_path, 'one'), losses(tmp_path, 'two')
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    no_mem = distributed_args(corpus, tmp_path) + ['--batching', 'stream', '--gradient_accumulation_steps', '2']
    one_process(no_mem, 'plain')
    assert max(abs(x - y) for x, y in zip(a[1:], losses(tmp_path, 'plain')[1:])) > 1e-3  # the memory changes the losses
