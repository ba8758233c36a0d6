"End-to-end runs of the console scripts, as a user types them."
import json
from pathlib import Path
import pytest
from conftest import REPO, run_cli

TINY = '--d_model 32 --n_layers 2 --n_heads 2 --block_size 32 --batch_size 4 --eval_iters 2 --lr 3e-3 --no-progress'.split()


def test_train_then_generate(tmp_path, corpus):
    r = run_cli('nanoformer_train', '--dataset', corpus, *TINY, '--max_steps', 40, '--save_every', 20,
                '--out_dir', tmp_path / 'runs', '--run_name', 'e2e')
    assert r.returncode == 0, r.stderr
    run = tmp_path / 'runs' / 'e2e'
    assert sorted(p.name for p in (run / 'checkpoints').iterdir()) == ['step_0000020', 'step_0000040']
    rows = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]
    losses = [r['loss'] for r in rows if 'loss' in r]
    assert losses[-1] < losses[0], losses
    g = run_cli('nanoformer_generate', '--checkpoint_path', run, '--prompt', 'def ', '--max_new_tokens', 30, '--temperature', 0)
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith('def ') and len(g.stdout.rstrip('\n')) > 4 + 20  # 30 new byte tokens
    # the same seed gives the same sample
    s = [run_cli('nanoformer_generate', '--checkpoint_path', run, '--prompt', 'def', '--seed', 7, '--top_k', 5, '--max_new_tokens', 20).stdout for _ in range(2)]
    assert s[0] == s[1]


def metrics(run) -> list[dict]: return [json.loads(l) for l in (Path(run) / 'metrics.jsonl').read_text().splitlines()]

EXACT = ('loss', 'lr', 'grad_norm', 'pad_frac', 'tokens')  # the deterministic fields of a training row (not timings)


def test_resume_from_run_dir(tmp_path, corpus):
    "Extending a finished 20-step run to 30 logs each step once and reproduces a straight 30-step run bit for bit (CPU, same seed)."
    # a constant schedule after a 5-step warmup: the learning rate of step i does not depend on max_steps, so extending the
    # run changes nothing before step 20 and the straight run is a fair reference (with cosine, a 20- and a 30-step schedule differ from the second step on)
    args = ['--dataset', corpus, *TINY, '--schedule', 'constant', '--warmup_steps', 5, '--log_every', 1, '--save_every', 10]
    assert run_cli('nanoformer_train', *args, '--max_steps', 20, '--out_dir', tmp_path / 'runs', '--run_name', 'r').returncode == 0
    r = run_cli('nanoformer_train', *args, '--max_steps', 30, '--resume_from_checkpoint', '--checkpoint_path', tmp_path / 'runs' / 'r')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'runs' / 'r' / 'checkpoints' / 'step_0000030').is_dir()
    s = run_cli('nanoformer_train', *args, '--max_steps', 30, '--out_dir', tmp_path / 'runs', '--run_name', 'straight')
    assert s.returncode == 0, s.stderr
    resumed, straight = ([row for row in metrics(tmp_path / 'runs' / n) if 'loss' in row] for n in ('r', 'straight'))
    assert [row['step'] for row in resumed] == list(range(1, 31))  # log_every 1: every step once, none twice, none missing
    assert [row['step'] for row in straight] == list(range(1, 31))
    for a, b in zip(resumed, straight):  # bit for bit: same batches, weights, optimizer moments and RNG after the restart
        assert {k: a[k] for k in EXACT} == {k: b[k] for k in EXACT}, (a, b)
    assert [row['step'] for row in metrics(tmp_path / 'runs' / 'r') if 'val_loss' in row] == [20, 30]  # each run evaluates at its end


def test_nanoformer_readme_command_estimate(tmp_path, corpus):
    "NanoFormer's README command (dataset swapped for a local file: no hub here) with --estimate."
    r = run_cli('nanoformer_train', '--dataset', corpus, '--batch_size', 8, '--gradient_accumulation_steps', 16,
                '--num_epochs', 1, '--lr', 5e-4, '--hidden_dim', 256, '--num_hidden_layers', 8, '--estimate')
    assert r.returncode == 0, r.stderr
    out = dict(l.split(None, 1) for l in r.stdout.splitlines() if l.strip())
    assert int(out['params'].replace(',', '')) > 5_000_000
    assert 'tokens_per_param' in out and 'chinchilla_optimal_tokens' in out


def test_nanoformer_flag_spellings(tmp_path, corpus):
    r = run_cli('nanoformer_train', '--dataset', corpus, '--hidden_size', 32, '--num_hidden_layers', 1, '--attention_type', 'gqa',
                '--num_attention_heads', 4, '--logit_cap', 30, '--logit_scale', 1.0, '--warmup_ratio', 0.1, '--max_grad_norm', 1.0,
                '--save_steps', 5, '--max_position_embeddings', 32, '--batch_size', 2, '--max_steps', 5, '--eval_iters', 1,
                '--no_wandb', '--run_name', 'nf', '--out_dir', tmp_path / 'runs', '--no-progress')
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / 'runs/nf/config.json').read_text())
    assert (cfg['d_model'], cfg['n_layers'], cfg['attention'], cfg['n_kv_heads'], cfg['logit_cap']) == (32, 1, 'gqa', 2, 30.0)


def test_wandb_offline(tmp_path, corpus):
    r = run_cli('nanoformer_train', '--dataset', corpus, *TINY, '--max_steps', 10, '--log_every', 5, '--wandb',
                '--out_dir', tmp_path / 'runs', '--run_name', 'w')
    assert r.returncode == 0, r.stderr
    offline = list((tmp_path / 'runs/w/wandb').glob('offline-run-*'))
    assert offline and any(offline[0].rglob('*.wandb'))


def test_help_reads_well():
    r = run_cli('nanoformer_train', '--help')
    assert r.returncode == 0
    for flag in ('--d_model', '--hidden_dim', '--hidden_size', '--num_hidden_layers', '--attention_type', '--estimate',
                 '--resume_from_checkpoint', '--checkpoint_path', '--logit_cap', '--warmup_ratio'):
        assert flag in r.stdout, flag
    assert run_cli('nanoformer_generate', '--help').returncode == 0


def test_readme_shows_ci_test_command():
    ci = (REPO / '.ci' / 'run').read_text()
    cmd = next(l.split("'", 1)[1].rsplit("'", 1)[0] for l in ci.splitlines() if l.startswith('cmd='))
    assert cmd in (REPO / 'README.md').read_text()


def test_defaults_train_on_stdlib(tmp_path):
    "The no-argument run's defaults: the built-in stdlib corpus, a checkpoint under ./runs (shortened to 3 steps here)."
    est = run_cli('nanoformer_train', '--estimate', cwd=tmp_path)
    assert est.returncode == 0, est.stderr
    out = dict(l.split(None, 1) for l in est.stdout.splitlines() if l.strip())
    assert int(out['dataset_train_tokens'].replace(',', '')) > 10_000_000  # the standard library's source, byte-level
    r = run_cli('nanoformer_train', '--max_steps', 3, '--eval_iters', 1, '--no-progress', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / 'runs').glob('stdlib-mha-d128-l4-*/checkpoints/step_0000003/model.safetensors'))) == 1
