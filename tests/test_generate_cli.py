"`nanoformer_generate` as a user types it: prompt sources, sampling flags, stops, streaming, dtype, bad values."
import io, os, shutil, subprocess, sys
import pytest
from conftest import run_cli
from fastcore.script import anno_parser
from nanoformer.cli import nanoformer_generate


def gen(*args, input=None):
    "Run the nanoformer_generate console script with `input` on stdin (an empty stdin if None: never the terminal's)."
    exe = shutil.which('nanoformer_generate')
    return subprocess.run([exe, *map(str, args)], input=input or '', capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


@pytest.fixture
def cli(monkeypatch, capsys):
    "The same command line run in this process (no interpreter start-up per call): returns `(exit status, stdout, stderr)`."
    def call(*args, input=''):
        monkeypatch.setattr(sys, 'stdin', io.StringIO(input))
        ns = vars(anno_parser(nanoformer_generate.__wrapped__).parse_args(list(map(str, args))))
        ns.pop('pdb'), ns.pop('xtra')
        try: code = nanoformer_generate.__wrapped__(**ns) or 0
        except SystemExit as e: code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "One tiny trained run (byte tokenizer, RoPE, block_size 32) shared by the tests of this file."
    tmp = tmp_path_factory.mktemp('gen')
    (tmp / 'corpus.txt').write_text(''.join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(2000)))
    env = dict(os.environ, NANOFORMER_CACHE=str(tmp / 'cache'), HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    r = subprocess.run([shutil.which('nanoformer_train'), '--dataset', str(tmp / 'corpus.txt'), '--d_model', '32',
                        '--n_layers', '2', '--n_heads', '2', '--block_size', '32', '--batch_size', '8', '--lr', '3e-3',
                        '--eval_iters', '1', '--max_steps', '60', '--no-progress', '--out_dir', str(tmp / 'runs'),
                        '--run_name', 'g'], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / 'runs' / 'g'


def ok(res):
    code, out, err = res
    assert code == 0, err[-2000:]
    return out


def test_console_script(run, tmp_path):
    "The installed script, stdin piped in as a shell would, and a bad value's one-line error."
    args = ['--checkpoint_path', run, '--max_new_tokens', 20, '--temperature', 0]
    r = gen(*args, input='def f1')
    assert r.returncode == 0 and r.stdout.startswith('def f1') and len(r.stdout) > len('def f1\n'), r.stderr
    assert gen(*args, '--prompt', 'def f1').stdout == r.stdout
    r = gen(*args, '--top_p', 1.5)
    assert r.returncode == 2 and r.stderr == 'error: top_p=1.5 must be in (0, 1]\n', r.stderr


def test_prompt_sources_agree(run, tmp_path, cli):
    args = ['--checkpoint_path', run, '--max_new_tokens', 20, '--temperature', 0]
    (tmp_path / 'p.txt').write_text('def f1')
    by_flag = ok(cli(*args, '--prompt', 'def f1'))
    assert by_flag.startswith('def f1') and len(by_flag) > len('def f1\n')
    assert ok(cli(*args, '--prompt_file', tmp_path / 'p.txt')) == by_flag
    assert ok(cli(*args, input='def f1')) == by_flag
    assert len(ok(cli(*args))) > 1  # no prompt at all: start from the end-of-text token


def test_stream_equals_batch(run, cli):
    for extra in (['--temperature', 0], ['--temperature', 1.0, '--seed', 3, '--top_p', 0.9, '--min_p', 0.05,
                                          '--repetition_penalty', 1.3, '--top_k', 20]):
        args = ['--checkpoint_path', run, '--prompt', 'def ', '--max_new_tokens', 40, *extra]
        assert ok(cli(*args, '--stream')) == ok(cli(*args))


def test_seed_reproducible_and_num_samples(run, cli):
    args = ['--checkpoint_path', run, '--prompt', 'def', '--max_new_tokens', 30, '--seed', 7, '--num_samples', 3]
    out = ok(cli(*args))
    assert out == ok(cli(*args))
    assert out.count('--- sample ') == 3


def test_stop_strings(run, cli):
    args = ['--checkpoint_path', run, '--prompt', 'def f1(x):', '--max_new_tokens', 60, '--temperature', 0]
    free = ok(cli(*args))[len('def f1(x):'):]
    one_line = ok(cli(*args, '--stop', '\\n'))
    assert one_line == 'def f1(x):' + free[:free.find('\n')] + '\n'
    assert ok(cli(*args, '--stop', '\\n', '--stream')) == one_line
    s1, s2 = free[12:14], free[6:8]  # repeatable: the earliest of the stops wins
    both = ok(cli(*args, '--stop', s1, '--stop', s2))
    assert both == 'def f1(x):' + free[:min(free.find(s1), free.find(s2))] + '\n'


def test_dtype_bfloat16_and_overflow(run, cli):
    assert ok(cli('--checkpoint_path', run, '--prompt', 'def ', '--max_new_tokens', 10, '--dtype', 'bfloat16')).startswith('def ')
    long = 'x' * 40  # byte tokenizer: 40 tokens > block_size 32
    code, _, err = cli('--checkpoint_path', run, '--prompt', long, '--max_new_tokens', 5)
    assert code == 2 and err.count('\n') == 1 and "longer than the model's context block_size=32" in err, err
    assert ok(cli('--checkpoint_path', run, '--prompt', long, '--max_new_tokens', 5, '--overflow', 'slide')).startswith(long)


BAD = {
    'top_p above 1': (['--top_p', 1.5], 'top_p=1.5 must be in (0, 1]'),
    'min_p above 1': (['--min_p', 2], 'min_p=2.0 must be in [0, 1]'),
    'top_k zero': (['--top_k', 0], 'top_k=0 must be a positive integer'),
    'negative temperature': (['--temperature', -1], 'temperature=-1.0 must be 0'),
    'zero penalty': (['--repetition_penalty', 0], 'repetition_penalty=0.0 must be positive'),
    'negative max_new_tokens': (['--max_new_tokens', -1], 'max_new_tokens=-1 must be 0 or positive'),
    'no samples': (['--num_samples', 0], 'num_samples=0 must be at least 1'),
    'stream many': (['--stream', '--num_samples', 2], '--stream prints one sample'),
    'bad dtype': (['--dtype', 'float64'], "dtype='float64' is not allowed"),
    'float16 on cpu': (['--dtype', 'float16', '--device', 'cpu'], "dtype='float16' needs a cuda device"),
    'bad overflow': (['--overflow', 'wrap'], "overflow='wrap' is not allowed"),
    'empty stop': (['--stop', ''], '--stop got an empty string'),
    'two prompts': (['--prompt', 'a', '--prompt_file', '/etc/hostname'], 'give --prompt or --prompt_file, not both'),
    'missing prompt file': (['--prompt_file', '/no/prompt.txt'], "prompt_file '/no/prompt.txt' does not exist"),
    'no checkpoint': ([], '--checkpoint_path is required'),
}


@pytest.mark.parametrize('name', list(BAD))
def test_generate_bad_values(name, tmp_path, cli):
    "Checked before any model loads: the checkpoint path need not even exist."
    extra, msg = BAD[name]
    ck = [] if name == 'no checkpoint' else ['--checkpoint_path', tmp_path / 'no_run']
    code, _, err = cli(*ck, *extra)
    assert code == 2, (code, err[-1000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and msg in lines[0], err[-1000:]


def test_help_lists_generate_flags():
    out = run_cli('nanoformer_generate', '--help').stdout
    for flag in ('--min_p', '--repetition_penalty', '--stop', '--stream', '--prompt_file', '--dtype', '--overflow', '--num_samples'):
        assert flag in out, flag
