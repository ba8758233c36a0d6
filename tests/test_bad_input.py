"Bad input: a clear one-line error and exit status 2, never a traceback."
import pytest
from conftest import run_cli

TINY = ['--d_model', 32, '--n_layers', 1, '--n_heads', 2, '--block_size', 16, '--max_steps', 2, '--no-progress']


def corrupt_run(tmp_path):
    ck = tmp_path / 'bad' / 'checkpoints' / 'step_0000001'
    ck.mkdir(parents=True)
    (ck / 'config.json').write_text('{"d_model": 32, "n_layers": 1, "n_heads": 2, "block_size": 16}')
    (ck / 'model.safetensors').write_bytes(b'not a safetensors file')
    (ck / 'trainer_state.pt').write_bytes(b'nor a torch file')
    return tmp_path / 'bad'


CASES = {
    'zero heads': (['--n_heads', 0], 'n_heads=0 must be a positive integer'),
    'heads not divisible': (['--n_heads', 6, '--n_kv_heads', 4, '--d_model', 48], 'n_heads=6 is not divisible by n_kv_heads=4'),
    'more kv heads than heads': (['--n_kv_heads', 8], 'n_kv_heads=8 must be at most n_heads'),
    'unknown attention': (['--attention', 'nope'], "unknown attention 'nope'"),
    'unknown norm': (['--norm', 'batchnorm'], "unknown norm 'batchnorm'"),
    'bad int': (['--d_model', 'abc'], "invalid int value: 'abc'"),
    'unknown flag': (['--hidden_dimm', 32], 'unrecognized arguments: --hidden_dimm'),
    'dropout out of range': (['--dropout', 1.5], 'dropout=1.5 must be in [0, 1)'),
    'negative lr': (['--lr', -1], 'lr=-1.0 must be positive'),
    'unknown schedule': (['--schedule', 'linear'], "schedule='linear' is not allowed"),
    'missing file': (['--dataset', '/no/such/file.txt'], "dataset path '/no/such/file.txt' does not exist"),
    'unknown dataset': (['--dataset', 'no-such-user/no-such-dataset'], "could not load dataset 'no-such-user/no-such-dataset'"),
    'unknown tokenizer': (['--tokenizer', 'no-such-tokenizer-xyz'], 'no-such-tokenizer-xyz'),
    'block size larger than the data': (['--block_size', 100000], 'block_size=100000 is larger than the data'),
    'bad device': (['--device', 'tpu'], "device='tpu' is not allowed"),
    'missing config file': (['--config', '/no/config.json'], "config file '/no/config.json' does not exist"),
}


@pytest.mark.parametrize('name', list(CASES))
def test_train_bad_input(name, tmp_path, corpus):
    extra, msg = CASES[name]
    args = ['--dataset', corpus, *TINY, '--out_dir', tmp_path / 'runs']
    r = run_cli('nanoformer_train', *args, *map(str, extra))
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), r.stderr[-2000:]
    assert msg in lines[0], lines[0]


def test_resume_corrupt_checkpoint(tmp_path, corpus):
    "A real checkpoint whose weights were damaged, and a hand-made one with no tokenizer."
    args = ['--dataset', corpus, *TINY, '--out_dir', tmp_path / 'runs', '--run_name', 'r']
    assert run_cli('nanoformer_train', *args).returncode == 0
    ck = tmp_path / 'runs/r/checkpoints/step_0000002'
    (ck / 'model.safetensors').write_bytes(b'not a safetensors file')
    r = run_cli('nanoformer_train', *args, '--max_steps', 4, '--resume_from_checkpoint')
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'is corrupt or incomplete' in r.stderr, r.stderr
    r = run_cli('nanoformer_train', '--dataset', corpus, *TINY, '--resume_from_checkpoint', '--checkpoint_path', corrupt_run(tmp_path))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'holds no saved tokenizer' in r.stderr, r.stderr


def test_resume_missing_checkpoint(tmp_path, corpus):
    r = run_cli('nanoformer_train', '--dataset', corpus, *TINY, '--resume_from_checkpoint', '--checkpoint_path', tmp_path / 'nothing')
    assert r.returncode == 2 and "does not exist" in r.stderr and r.stderr.count('\n') == 1, r.stderr


@pytest.mark.parametrize('args,msg', [
    (['--checkpoint_path', '/no/run'], "checkpoint_path '/no/run' does not exist"),
    (['--checkpoint_path', 'CORRUPT'], 'could not load weights'),
])
def test_generate_bad_input(args, msg, tmp_path):
    args = [str(corrupt_run(tmp_path)) if a == 'CORRUPT' else a for a in args]
    r = run_cli('nanoformer_generate', *args)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and msg in r.stderr, r.stderr
