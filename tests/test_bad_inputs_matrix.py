"""Bad inputs and faults, each run through a console script (`nanoformer_train`, `nanoformer_generate`, `nanoformer_compare`)
or the Python API, each with its expected outcome: a one-line `error: ...` holding a message fragment (exit status 2 for usage
errors), or a clean success (sometimes with a one-line notice). Never a traceback, and no existing checkpoint changes: the files
of every complete checkpoint of the shared trained run, and of the per-case copy of it, are hashed before and after each case.

The console scripts run in this process (their entry functions, with argv, stdin and stdout/stderr captured), so a case costs a
fraction of a second instead of an interpreter start; `test_in_a_real_process` runs a few cases as real processes, where a
traceback would print on stderr. Tiny models (d_model 32, 1 layer), and one trained run for the whole module."""
import contextlib, hashlib, io, json, math, os, shutil, subprocess, sys, time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
import pytest
import torch
from conftest import run_cli
from nanoformer.config import ModelConfig, NanoformerError

MODEL = ['--d_model', '32', '--n_layers', '1', '--n_heads', '2', '--block_size', '16']
RUN = ['--batch_size', '4', '--eval_iters', '1', '--log_every', '1', '--no-progress']
TINY = MODEL + RUN
LOG = os.environ.get('MATRIX_LOG')  # optional: append each case's observed outcome here (for the before/after table)


# ---------------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    "A corpus, a second corpus, and one trained run (4 steps, checkpoints at 2 and 4, byte tokenizer) for the whole module."
    from nanoformer.train import TrainConfig, train
    root = tmp_path_factory.mktemp('matrix')
    corpus, other = root / 'corpus.txt', root / 'other.txt'
    corpus.write_text(''.join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(1500)))
    other.write_text(''.join(f"class C{i}:\n    y = {i * 3}\n\n" for i in range(1500)))
    old = {k: os.environ.get(k) for k in ('NANOFORMER_CACHE', 'HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE')}
    os.environ.update(NANOFORMER_CACHE=str(root / 'cache'), HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    try:
        train(TrainConfig(dataset=str(corpus), max_steps=4, save_every=2, keep_last=0, batch_size=4, eval_iters=1, log_every=1,
                          out_dir=str(root / 'runs'), run_name='base', progress=False),
              ModelConfig(d_model=32, n_layers=1, n_heads=2, block_size=16))
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    return dict(root=root, corpus=corpus, other=other, run=root / 'runs' / 'base')


class Ctx:
    "What a case can refer to: `{corpus}`, `{other}`, `{run}` (shared, never to change), `{copy}` (a copy of it), `{tmp}`, `{out}`."
    def __init__(self, shared, tmp):
        self.corpus, self.other, self.run, self.tmp, self.out = shared['corpus'], shared['other'], shared['run'], tmp, tmp / 'runs'
        self._copy, self.cleanup = None, []
    @property
    def copy(self) -> Path:
        if self._copy is None:
            self._copy = self.tmp / 'copy'
            shutil.copytree(self.run, self._copy, ignore=shutil.ignore_patterns('.lock'))
        return self._copy
    def fmt(self, s) -> str:
        s = str(s)
        if '{copy}' in s: s = s.replace('{copy}', str(self.copy))
        return s.format(corpus=self.corpus, other=self.other, run=self.run, tmp=self.tmp, out=self.out, copy='{copy}')


def complete(d: Path) -> bool:
    return all((d / f).exists() for f in ('config.json', 'model.safetensors', 'trainer_state.pt', 'tokenizer'))


def checkpoint_hashes(run: Path) -> dict:
    "sha256 of every file in the run's complete checkpoint directories."
    out = {}
    for d in sorted((run / 'checkpoints').glob('step_*')):
        if not complete(d): continue
        for f in sorted(d.rglob('*')):
            if f.is_file(): out[str(f.relative_to(run))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    tool: str                       # 'train' | 'generate' | 'compare' | 'api'
    args: list | Callable           # argv (with {placeholders}), or for 'api' a function of the Ctx
    expect: str | None              # fragment of the one-line error; None: a clean success
    code: int = 2                   # exit status of an error
    setup: Callable | None = None   # prepares files: setup(ctx)
    after: Callable | None = None   # extra assertions: after(ctx, out, err)
    stdin: bytes | str = ''
    notice: str | None = None       # a clean success must print this on stderr (one line)
    lines: int | None = 1           # lines on stderr for an error (None: not checked, e.g. argparse usage + error)


def write(rel, content):
    "A setup that writes `content` (str or bytes) to `{tmp}/rel`."
    def setup(ctx):
        p = ctx.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return setup


def edit_config(key, value, where='{copy}/checkpoints/step_0000004/config.json'):
    "A setup that sets `key` to `value` in a JSON config (`None` → null)."
    def setup(ctx):
        p = Path(ctx.fmt(where))
        d = json.loads(p.read_text()); d[key] = value
        p.write_text(json.dumps(d))
    return setup


def model_config(**changes):
    "A setup writing `{tmp}/model.json`: the tiny model with `changes` (JSON values, null allowed)."
    base = dict(d_model=32, n_layers=1, n_heads=2, block_size=16)
    return write('model.json', json.dumps({**base, **changes}))


def spec(**top):
    "A setup writing a comparison file `{tmp}/cmp.json`: one run of the tiny model on the corpus, with `top` replacing parts."
    def setup(ctx):
        s = dict(train=dict(dataset=str(ctx.corpus), max_steps=2, batch_size=4, eval_iters=1, eval_every=0),
                 model=dict(d_model=32, n_layers=1, n_heads=2, block_size=16), runs=[dict(name='a')])
        s.update(top)
        (ctx.tmp / 'cmp.json').write_text(json.dumps(s))
    return setup


def no_run_dir(ctx, out, err): assert not ctx.out.exists() or not any(ctx.out.iterdir()), list(ctx.out.iterdir())


def all_finite_on_disk(root: Path):
    "Every weights file under `root` holds finite values only."
    from safetensors.torch import load_file
    files = list(root.rglob('model.safetensors'))
    for f in files: assert all(torch.isfinite(v).all() for v in load_file(f).values()), f
    return files


def poison_weights(path='{copy}/checkpoints/step_0000004/model.safetensors'):
    def setup(ctx):
        from safetensors.torch import load_file, save_file
        p = Path(ctx.fmt(path))
        w = load_file(p); k = next(iter(w)); w[k] = torch.full_like(w[k], float('nan'))
        save_file(w, p)
    return setup


def hold_lock(ctx):
    "Another 'run' holding the copy's lock (flock is per open file, so this process's own second open is refused too)."
    import fcntl
    f = open(ctx.copy / '.lock', 'a+')
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.seek(0); f.truncate(); f.write('424242\n'); f.flush()
    ctx.cleanup.append(f.close)


def plant_debris(ctx):
    ck = ctx.copy / 'checkpoints'
    (ck / '.step_0000006.tmpab12cd').mkdir(); (ck / '.step_0000006.tmpab12cd' / 'model.safetensors').write_bytes(b'half')
    (ck / '.step_0000001.trash').mkdir()
    shutil.copytree(ck / 'step_0000002', ck / 'step_0000003')  # a half-pruned checkpoint: its weights already deleted
    (ck / 'step_0000003' / 'model.safetensors').unlink()


def debris_gone(ctx, out, err):
    names = sorted(p.name for p in (ctx.copy / 'checkpoints').iterdir())
    assert names == ['step_0000002', 'step_0000004', 'step_0000006'], names


def damage_cache(how):
    "A setup that builds the token cache of the corpus, then damages it `how`."
    def setup(ctx):
        from nanoformer.data import prepare_data
        d = prepare_data(str(ctx.corpus), 'byte', vocab_size=1024, progress=False).cache_dir  # as the trainer calls it
        b = d / 'train.bin'
        if how == 'meta': (d / 'meta.json').unlink()
        elif how == 'odd': b.write_bytes(b.read_bytes()[:-1])
        elif how == 'even': b.write_bytes(b.read_bytes()[:len(b.read_bytes()) // 4 * 2])
        elif how == 'flip': raw = bytearray(b.read_bytes()); raw[100] ^= 1; b.write_bytes(bytes(raw))
        elif how == 'file': shutil.rmtree(d); d.write_text('not a folder')
    return setup


def readonly_out(ctx):
    "`{out}` on a read-only file system (a read-only tmpfs as root; a mode-555 folder otherwise)."
    ctx.out.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(ctx.out)], capture_output=True)
        if r.returncode: pytest.skip(f'cannot mount a read-only tmpfs: {r.stderr.decode().strip()}')
        ctx.cleanup.append(lambda: subprocess.run(['umount', str(ctx.out)], check=True))
    else:
        ctx.out.chmod(0o555); ctx.cleanup.append(lambda: ctx.out.chmod(0o755))


def unreadable_corpus(ctx):
    "`{tmp}/locked.txt` that cannot be read (mode 000; as root, which reads anything, a link to /proc/self/mem, whose read fails)."
    p = ctx.tmp / 'locked.txt'
    if os.geteuid() == 0: os.symlink('/proc/self/mem', p)
    else: shutil.copy(ctx.corpus, p); p.chmod(0)


def fifo(name):
    def setup(ctx): os.mkfifo(ctx.tmp / name)
    return setup


def parquet(name, column):
    def setup(ctx):
        import pandas as pd
        pd.DataFrame({'text': column}).to_parquet(ctx.tmp / name)
    return setup


def api_train(**tc):
    "A Python-API case: `train` of the tiny model on the corpus, with TrainConfig changes `tc`."
    def call(ctx):
        from nanoformer.train import TrainConfig, train
        base = dict(dataset=str(ctx.corpus), max_steps=2, batch_size=4, eval_iters=1, out_dir=str(ctx.out), progress=False)
        return train(TrainConfig(**{**base, **{k: ctx.fmt(v) if isinstance(v, str) else v for k, v in tc.items()}}),
                     ModelConfig(d_model=32, n_layers=1, n_heads=2, block_size=16))
    return call


def api(fn): return fn


def _generate_huge(ctx):
    from nanoformer.generate import generate
    from nanoformer.model import from_pretrained
    generate(from_pretrained(ctx.run / 'checkpoints' / 'step_0000004'), [[1, 2]], 10**9)


def _generate_long_ok(ctx):
    "A RoPE model decodes past block_size: the cache grows with the text (5 × block_size here)."
    from nanoformer.generate import generate
    from nanoformer.model import from_pretrained
    m = from_pretrained(ctx.run / 'checkpoints' / 'step_0000004')
    out = generate(m, [[1, 2]], 80, temperature=0)
    assert len(out[0]) == 82


def _docs(name, text_column='text'):
    def call(ctx):
        from nanoformer.data import load_documents
        return load_documents(str(ctx.tmp / name), 'train', text_column, val_fraction=0.0)
    return call


def _model_config(**kw):
    def call(ctx): return ModelConfig(**{**dict(d_model=32, n_layers=1, n_heads=2, block_size=16), **kw})
    return call


def _train_config(**kw):
    def call(ctx):
        from nanoformer.train import TrainConfig
        return TrainConfig(**kw)
    return call


def _from_json(ctx): return ModelConfig.from_json(ctx.tmp / 'model.json')


def _read_spec_plan(ctx):
    from nanoformer.compare import plan_runs, read_spec
    return plan_runs(read_spec(ctx.tmp / 'cmp.json'), ctx.tmp / 'cmpout')


def _cache_rebuilt(ctx):
    from nanoformer.data import prepare_data
    d = prepare_data(str(ctx.corpus), 'byte', vocab_size=1024, progress=False)
    assert len(d.train) > 10_000


def _mem_len_learned(ctx):
    "Segment memory needs relative positions: refused before the run directory exists."
    from nanoformer.train import TrainConfig, train
    train(TrainConfig(dataset=str(ctx.corpus), max_steps=2, batch_size=4, eval_iters=1, out_dir=str(ctx.out), progress=False, mem_len=8),
          ModelConfig(d_model=32, n_layers=1, n_heads=2, block_size=16, pos='learned'))


def _new_lr_taken(ctx, out, err):
    assert json.loads((ctx.copy / 'train_config.json').read_text())['lr'] == 5e-4
    assert (ctx.copy / 'checkpoints' / 'step_0000006').is_dir()


def _latest_of_file(ctx):
    from nanoformer.train import latest_checkpoint
    (ctx.tmp / 'f').write_text('x')
    latest_checkpoint(ctx.tmp / 'f')


RESUME = ['--resume_from_checkpoint', '--checkpoint_path', '{copy}']
GEN = ['--checkpoint_path', '{run}', '--max_new_tokens', '4']

CASES = {
    # --- training flags: schema (type, finiteness, range) ------------------------------------------------------------------
    'train lr inf': Case('train', ['--lr', 'inf'], 'lr=inf'),
    'train lr nan': Case('train', ['--lr', 'nan'], 'lr=nan'),
    'train lr negative': Case('train', ['--lr', '-1'], 'lr=-1.0'),
    'train weight_decay inf': Case('train', ['--weight_decay', 'inf'], 'weight_decay=inf'),
    'train beta1 2': Case('train', ['--beta1', '2'], 'beta1=2.0'),
    'train beta2 nan': Case('train', ['--beta2', 'nan'], 'beta2=nan'),
    'train num_epochs inf': Case('train', ['--num_epochs', 'inf'], 'num_epochs=inf'),
    'train tokens_per_param inf': Case('train', ['--tokens_per_param', 'inf'], 'tokens_per_param=inf'),
    'train seed -1': Case('train', ['--seed', '-1'], 'seed=-1'),
    'train seed 2**64': Case('train', ['--seed', str(2**64)], f'seed={2**64}'),
    'train seed 1e23': Case('train', ['--seed', '1e23'], "invalid int value: '1e23'"),
    'train warmup_steps -5': Case('train', ['--warmup_steps', '-5'], 'warmup_steps=-5'),
    'train grad_clip nan': Case('train', ['--grad_clip', 'nan'], 'grad_clip=nan'),
    'train min_lr_ratio nan': Case('train', ['--min_lr_ratio', 'nan'], 'min_lr_ratio=nan'),
    'train muon_lr inf': Case('train', ['--muon_lr', 'inf'], 'muon_lr=inf'),
    'train max_bad_steps 0': Case('train', ['--max_bad_steps', '0'], 'max_bad_steps=0'),
    'train batch_size 0': Case('train', ['--batch_size', '0'], 'batch_size=0'),
    'train eval_every -1': Case('train', ['--eval_every', '-1'], 'eval_every=-1'),
    'train run_name with a slash': Case('train', ['--run_name', '../escape'], "run_name='../escape'", after=no_run_dir),
    'train unknown flag': Case('train', ['--hidden_dimm', '32'], 'unrecognized arguments: --hidden_dimm'),
    'train device tpu': Case('train', ['--device', 'tpu'], "device='tpu' is not allowed"),
    # --- model flags: schema ----------------------------------------------------------------------------------------------
    'train init_std inf': Case('train', ['--init_std', 'inf'], 'init_std=inf'),
    'train logit_cap inf': Case('train', ['--logit_cap', 'inf'], 'logit_cap=inf'),
    'train logit_scale inf': Case('train', ['--logit_scale', 'inf'], 'logit_scale=inf'),
    'train rope_theta inf': Case('train', ['--rope_theta', 'inf'], 'rope_theta=inf'),
    'train lambda_init nan': Case('train', ['--attention', 'diff', '--lambda_init', 'nan'], 'lambda_init=nan'),
    'train norm_eps nan': Case('train', ['--norm_eps', 'nan'], 'norm_eps=nan'),
    'train dropout 1.5': Case('train', ['--dropout', '1.5'], 'dropout=1.5'),
    'train kv_lora_rank > d_model': Case('train', ['--attention', 'mla', '--kv_lora_rank', '1000'], 'kv_lora_rank=1000'),
    'train n_heads 0': Case('train', ['--n_heads', '0'], 'n_heads=0'),
    'train mem_len with learned positions': Case('train', ['--mem_len', '8', '--pos', 'learned'], 'mem_len=8', after=no_run_dir),
    # --- --config files ---------------------------------------------------------------------------------------------------
    'config dropout string': Case('train', ['--config', '{tmp}/model.json'], "dropout='0.1'", setup=model_config(dropout='0.1')),
    'config norm_eps string': Case('train', ['--config', '{tmp}/model.json'], "norm_eps='1e-5'", setup=model_config(norm_eps='1e-5')),
    'config window_pattern 5': Case('train', ['--config', '{tmp}/model.json'], 'window_pattern=5', setup=model_config(window_pattern=5)),
    'config activation null': Case('train', ['--config', '{tmp}/model.json'], 'activation=None', setup=model_config(activation=None)),
    'config share null': Case('train', ['--config', '{tmp}/model.json'], 'share=None', setup=model_config(share=None)),
    'config rope_theta null': Case('train', ['--config', '{tmp}/model.json'], 'rope_theta=None', setup=model_config(rope_theta=None)),
    'config logit_scale null': Case('train', ['--config', '{tmp}/model.json'], 'logit_scale=None', setup=model_config(logit_scale=None)),
    'config pos null': Case('train', ['--config', '{tmp}/model.json'], 'pos=None', setup=model_config(pos=None)),
    'config unknown key': Case('train', ['--config', '{tmp}/model.json'], "unknown ModelConfig field(s) ['nope']", setup=model_config(nope=1)),
    'config not JSON': Case('train', ['--config', '{tmp}/model.json'], 'is not valid JSON', setup=write('model.json', '{"d_model": ')),
    'config is a list': Case('train', ['--config', '{tmp}/model.json'], 'must be a JSON object', setup=write('model.json', '[1, 2]')),
    'config is a directory': Case('train', ['--config', '{tmp}'], 'is not a file'),
    'config missing': Case('train', ['--config', '{tmp}/none.json'], 'does not exist'),
    # --- data files -------------------------------------------------------------------------------------------------------
    'data missing': Case('train', ['--dataset', '{tmp}/none.txt'], 'does not exist'),
    'data unreadable': Case('train', ['--dataset', '{tmp}/locked.txt'], 'could not read', setup=unreadable_corpus),
    'data FIFO': Case('train', ['--dataset', '{tmp}/pipe.txt'], 'not a regular file or folder', setup=fifo('pipe.txt')),
    'data not UTF-8': Case('train', ['--dataset', '{tmp}/latin1.txt'], 'is not UTF-8', setup=write('latin1.txt', b'caf\xe9 au lait\n' * 500)),
    'data empty txt': Case('train', ['--dataset', '{tmp}/empty.txt'], 'is larger than the data', setup=write('empty.txt', '')),
    'data unsupported suffix': Case('train', ['--dataset', '{tmp}/data.xml'], 'unsupported type', setup=write('data.xml', '<a/>')),
    'data folder without text': Case('train', ['--dataset', '{tmp}/d'], 'holds no', setup=write('d/readme.md', 'x')),
    'jsonl line without text': Case('train', ['--dataset', '{tmp}/a.jsonl'], 'not a string',
                                    setup=write('a.jsonl', '{"text": "hello there"}\n{"other": "x"}\n' * 200)),
    'jsonl text is a number': Case('train', ['--dataset', '{tmp}/b.jsonl'], 'not a string', setup=write('b.jsonl', '{"text": 5}\n' * 200)),
    'jsonl mixed types': Case('train', ['--dataset', '{tmp}/c.jsonl'], 'c.jsonl', setup=write('c.jsonl', '{"text": "a b c"}\n{"text": 5}\n' * 100)),
    'jsonl wrong text_column': Case('train', ['--dataset', '{tmp}/e.jsonl', '--text_column', 'body'], "text column 'body' not found",
                                    setup=write('e.jsonl', '{"text": "hello"}\n' * 100)),
    'jsonl not JSON': Case('train', ['--dataset', '{tmp}/f.jsonl'], 'could not read', setup=write('f.jsonl', 'not json at all\n' * 10)),
    'parquet integer text': Case('train', ['--dataset', '{tmp}/g.parquet'], 'not a string', setup=parquet('g.parquet', list(range(300)))),
    'unknown dataset offline (fast)': Case('train', ['--dataset', 'no-such-user/no-such-dataset'], "could not load dataset 'no-such-user/no-such-dataset'"),
    'unknown tokenizer offline (fast)': Case('train', ['--tokenizer', 'no-such-user/no-such-tokenizer'], "unknown tokenizer 'no-such-user/no-such-tokenizer'"),
    'block_size larger than data': Case('train', ['--block_size', '100000'], 'block_size=100000 is larger than the data'),
    # --- token cache ------------------------------------------------------------------------------------------------------
    'cache meta deleted': Case('train', [], None, setup=damage_cache('meta'), notice='rebuilding'),
    'cache odd size': Case('train', [], None, setup=damage_cache('odd'), notice='rebuilding'),
    'cache truncated to even size': Case('train', [], None, setup=damage_cache('even'), notice='rebuilding'),
    'cache one bit flipped': Case('train', [], None, setup=damage_cache('flip'), notice='rebuilding'),
    'cache path is a file': Case('train', [], None, setup=damage_cache('file'), notice='rebuilding'),
    # --- run directories --------------------------------------------------------------------------------------------------
    'out_dir is a file': Case('train', ['--out_dir', '{tmp}/file'], 'is not a folder', setup=write('file', 'x')),
    'out_dir read-only': Case('train', [], 'cannot create run directory', setup=readonly_out),
    'run directory locked': Case('train', RESUME + ['--max_steps', '6'], 'is in use by another run (pid 424242)', setup=hold_lock),
    'fresh run into a locked directory': Case('train', ['--out_dir', '{copy}/..', '--run_name', 'copy'], 'is in use by another run', setup=hold_lock),
    # --- resume -----------------------------------------------------------------------------------------------------------
    'resume with another tokenizer': Case('train', RESUME + ['--tokenizer', 'char', '--max_steps', '6'], 'tokenizer'),
    'resume with another dataset': Case('train', RESUME + ['--dataset', '{other}', '--max_steps', '6'], 'dataset'),
    'resume with another d_model': Case('train', RESUME + ['--d_model', '64', '--max_steps', '6'], 'd_model=64'),
    'resume with another n_layers': Case('train', RESUME + ['--n_layers', '3', '--max_steps', '6'], 'n_layers=3'),
    'resume with a preset': Case('train', RESUME + ['--preset', 'gpt2-small', '--max_steps', '6'], 'architecture cannot change'),
    'resume a finished run': Case('train', RESUME, None, notice='already finished (step 4, max_steps=4'),
    'resume with max_steps below the step': Case('train', RESUME + ['--max_steps', '3'], None, notice='already finished (step 4, max_steps=3'),
    'resume with a new lr': Case('train', RESUME + ['--max_steps', '6', '--lr', '5e-4'], None, after=_new_lr_taken),
    'resume cleans crash debris': Case('train', RESUME + ['--max_steps', '6'], None, setup=plant_debris, after=debris_gone, notice='removed'),
    'resume a NaN checkpoint': Case('train', RESUME + ['--max_steps', '6'], 'not finite', setup=poison_weights()),
    'resume state-dict mismatch': Case('train', RESUME + ['--max_steps', '6'], 'size mismatch for', setup=edit_config('mlp_hidden', 64)),
    'resume corrupt weights': Case('train', RESUME + ['--max_steps', '6'], 'is corrupt or incomplete',
                                   setup=lambda ctx: (ctx.copy / 'checkpoints/step_0000004/model.safetensors').write_bytes(b'junk')),
    'resume nothing there': Case('train', ['--resume_from_checkpoint', '--checkpoint_path', '{tmp}/nothing'], 'does not exist'),
    'resume without a path': Case('train', ['--resume_from_checkpoint'], 'resume_from_checkpoint needs checkpoint_path'),
    # --- non-finite runs --------------------------------------------------------------------------------------------------
    'lr 1e30 diverges': Case('train', ['--lr', '1e30', '--max_steps', '6', '--save_every', '1', '--run_name', 'nan'], 'last good checkpoint',
                             code=1, after=lambda ctx, out, err: all_finite_on_disk(ctx.out)),
    # --- generation -------------------------------------------------------------------------------------------------------
    'generate max_new_tokens 1e9': Case('generate', ['--checkpoint_path', '{run}', '--max_new_tokens', '1000000000'], 'max_new_tokens=1000000000'),
    'generate max_new_tokens -1': Case('generate', ['--checkpoint_path', '{run}', '--max_new_tokens', '-1'], 'max_new_tokens=-1'),
    'generate prompt_file is a directory': Case('generate', GEN + ['--prompt_file', '{tmp}'], 'is a directory'),
    'generate prompt_file missing': Case('generate', GEN + ['--prompt_file', '{tmp}/none.txt'], 'does not exist'),
    'generate prompt_file not UTF-8': Case('generate', GEN + ['--prompt_file', '{tmp}/p.txt'], 'is not UTF-8', setup=write('p.txt', b'caf\xe9')),
    'generate stdin not UTF-8': Case('generate', GEN, 'is not UTF-8', stdin=b'caf\xe9'),
    'generate stdin UTF-8': Case('generate', GEN + ['--temperature', '0'], None, stdin='café '.encode()),
    'generate prompt and prompt_file': Case('generate', GEN + ['--prompt', 'a', '--prompt_file', '{tmp}/p.txt'], 'not both', setup=write('p.txt', 'x')),
    'generate temperature nan': Case('generate', GEN + ['--temperature', 'nan'], 'temperature=nan'),
    'generate temperature inf': Case('generate', GEN + ['--temperature', 'inf'], 'temperature=inf'),
    'generate top_p 0': Case('generate', GEN + ['--top_p', '0'], 'top_p=0'),
    'generate repetition_penalty inf': Case('generate', GEN + ['--repetition_penalty', 'inf'], 'repetition_penalty=inf'),
    'generate num_samples 0': Case('generate', GEN + ['--num_samples', '0'], 'num_samples=0'),
    'generate empty stop': Case('generate', GEN + ['--stop', ''], 'empty string'),
    'generate device tpu': Case('generate', GEN + ['--device', 'tpu'], "device='tpu' is not allowed"),
    'generate dtype int8': Case('generate', GEN + ['--dtype', 'int8'], "dtype='int8' is not allowed"),
    'generate bad int': Case('generate', GEN + ['--max_new_tokens', 'many'], "invalid int value: 'many'", lines=None),
    'generate checkpoint_path missing': Case('generate', ['--checkpoint_path', '{tmp}/none'], 'does not exist'),
    'generate checkpoint_path is a file': Case('generate', ['--checkpoint_path', '{tmp}/f'], 'no complete checkpoint', setup=write('f', 'x')),
    'generate NaN checkpoint': Case('generate', ['--checkpoint_path', '{copy}', '--max_new_tokens', '4'], 'not finite', setup=poison_weights()),
    'generate config pos null': Case('generate', ['--checkpoint_path', '{copy}', '--max_new_tokens', '4'], 'pos=None', setup=edit_config('pos', None)),
    'generate config dropout string': Case('generate', ['--checkpoint_path', '{copy}', '--max_new_tokens', '4'], "dropout='0.1'", setup=edit_config('dropout', '0.1')),
    'generate config mismatch': Case('generate', ['--checkpoint_path', '{copy}', '--max_new_tokens', '4'], 'could not load weights', setup=edit_config('mlp_hidden', 64)),
    'generate prompt longer than context': Case('generate', GEN + ['--prompt', 'x' * 40], 'longer than the model'),
    'generate prompt slides': Case('generate', GEN + ['--prompt', 'x' * 40, '--overflow', 'slide'], None),
    'generate past block_size': Case('generate', ['--checkpoint_path', '{run}', '--max_new_tokens', '60', '--temperature', '0', '--prompt', 'def'], None),
    # --- comparison files -------------------------------------------------------------------------------------------------
    'compare unknown top key': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'unknown keys', setup=spec(nope=1)),
    'compare unknown model key': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "unknown ModelConfig field(s) ['nope']",
                                      setup=spec(model=dict(d_model=32, nope=1))),
    'compare unknown train key': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "unknown TrainConfig field(s) ['nope']",
                                      setup=spec(train=dict(nope=1))),
    'compare model not a mapping': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'must be a mapping', setup=spec(model=[1, 2])),
    'compare run not a mapping': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "needs a 'name'", setup=spec(runs=[1])),
    'compare run model not a mapping': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'must be a mapping', setup=spec(runs=[dict(name='a', model=5)])),
    'compare run unknown key': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'unknown keys', setup=spec(runs=[dict(name='a', x=1)])),
    'compare seeds not integers': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'seeds=', setup=spec(seeds='abc')),
    'compare dropout string': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "dropout='0.1'", setup=spec(model=dict(d_model=32, dropout='0.1'))),
    'compare lr string': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "lr='fast'", setup=spec(train=dict(lr='fast'))),
    'compare tune lrs': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'tune.lrs', setup=spec(tune=dict(lrs=[0]))),
    'compare tune extend negative': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], 'tune.extend=-1 must be a whole number', setup=spec(tune=dict(lrs=[1e-3], extend=-1))),
    'compare tune unknown key': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o'], "unknown tune keys ['lr']", setup=spec(tune=dict(lr=[1e-3]))),
    'compare jobs zero': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o', '--jobs', '0'], 'jobs=0 must be a whole number', setup=spec()),
    'compare jobs not a number': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/o', '--jobs', 'two'], "--jobs: invalid int value: 'two'", setup=spec()),
    'compare file is a directory': Case('compare', ['{tmp}', '--out', '{tmp}/o'], 'is a directory'),
    'compare file missing': Case('compare', ['{tmp}/none.json', '--out', '{tmp}/o'], 'does not exist'),
    'compare out is a file': Case('compare', ['{tmp}/cmp.json', '--out', '{tmp}/f'], 'is not a folder', setup=lambda ctx: (spec()(ctx), write('f', 'x')(ctx))),
    # --- Python API -------------------------------------------------------------------------------------------------------
    'api TrainConfig lr inf': Case('api', _train_config(lr=math.inf), 'lr=inf'),
    'api TrainConfig seed -1': Case('api', _train_config(seed=-1), 'seed=-1'),
    'api TrainConfig lr string': Case('api', _train_config(lr='0.1'), "lr='0.1'"),
    'api TrainConfig warmup_steps -5': Case('api', _train_config(warmup_steps=-5), 'warmup_steps=-5'),
    'api ModelConfig dropout string': Case('api', _model_config(dropout='0.1'), "dropout='0.1'"),
    'api ModelConfig pos None': Case('api', _model_config(pos=None), 'pos=None'),
    'api ModelConfig init_std inf': Case('api', _model_config(init_std=math.inf), 'init_std=inf'),
    'api from_json activation null': Case('api', _from_json, 'activation=None', setup=model_config(activation=None)),
    'api train out_dir is a file': Case('api', api_train(out_dir='{tmp}/file'), 'is not a folder', setup=write('file', 'x')),
    'api train mem_len learned': Case('api', _mem_len_learned, 'mem_len=8', after=no_run_dir),
    'api generate 1e9 tokens': Case('api', _generate_huge, 'max_new_tokens=1000000000'),
    'api generate past block_size': Case('api', _generate_long_ok, None),
    'api jsonl without text': Case('api', _docs('a.jsonl'), 'not a string', setup=write('a.jsonl', '{"text": "x"}\n{"other": "y"}\n')),
    'api parquet integer text': Case('api', _docs('g.parquet'), 'not a string', setup=parquet('g.parquet', [1, 2, 3])),
    'api txt not UTF-8': Case('api', _docs('latin1.txt'), 'is not UTF-8', setup=write('latin1.txt', b'caf\xe9')),
    'api FIFO dataset': Case('api', _docs('pipe.txt'), 'not a regular file or folder', setup=fifo('pipe.txt')),
    'api damaged cache rebuilt': Case('api', _cache_rebuilt, None, setup=damage_cache('even'), notice='rebuilding'),
    'api latest_checkpoint of a file': Case('api', _latest_of_file, 'no complete checkpoint'),
    'api plan with unknown model key': Case('api', _read_spec_plan, "unknown ModelConfig field(s) ['nope']", setup=spec(model=dict(nope=1))),
}

# ------------------------------------------------------------------------------------------------------------------ runner
def train_base(ctx, argv) -> list[str]:
    "The tiny model and run every train case starts from; a resumed run keeps its own max_steps unless the case gives one."
    steps = [] if '--resume_from_checkpoint' in (argv or []) else ['--max_steps', '2']
    return TINY + steps + ['--dataset', str(ctx.corpus), '--out_dir', str(ctx.out)]


def _call_generate(argv, stdin):
    from fastcore.script import anno_parser
    from nanoformer.cli import nanoformer_generate
    ns = vars(anno_parser(nanoformer_generate.__wrapped__, prog='nanoformer_generate').parse_args(argv))
    ns.pop('pdb'), ns.pop('xtra')
    return nanoformer_generate.__wrapped__(**ns)


def _stdin(data):
    "A stdin like a pipe's: text over a byte buffer."
    raw = data.encode() if isinstance(data, str) else data
    return io.TextIOWrapper(io.BytesIO(raw), encoding='utf-8')


def run_in_process(case: Case, ctx: Ctx, monkeypatch) -> tuple[int, str, str, str | None]:
    "Run `case`: (exit status, stdout, stderr, traceback text if an exception escaped)."
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, 'stdin', _stdin(case.stdin))
    argv = [ctx.fmt(a) for a in case.args] if isinstance(case.args, list) else None
    base = {'train': train_base(ctx, argv), 'generate': [], 'compare': ['--no-progress']}
    code, tb = 0, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if case.tool == 'train':
                from nanoformer.cli import nanoformer_train
                nanoformer_train(base['train'] + argv)
            elif case.tool == 'generate': _call_generate(argv, case.stdin)
            elif case.tool == 'compare':
                from nanoformer.compare import nanoformer_compare
                nanoformer_compare(argv + base['compare'])
            else:
                try: case.args(ctx)
                except NanoformerError as e: print(f"error: {e}", file=sys.stderr); code = 2
        except SystemExit as e: code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            import traceback
            tb = traceback.format_exc()
    return code, out.getvalue(), err.getvalue(), tb


def _log(name, code, out, err, tb, ok):
    if not LOG: return
    lines = [l for l in err.strip().splitlines() if l.strip()]
    with open(LOG, 'a') as f:
        f.write(json.dumps(dict(case=name, code=code, traceback=tb.strip().splitlines()[-1] if tb else None,
                                last=(lines[-1] if lines else '')[:300], ok=ok)) + '\n')


@pytest.mark.parametrize('name', list(CASES))
def test_case(name, shared, tmp_path, monkeypatch):
    case, ctx = CASES[name], Ctx(shared, tmp_path)
    monkeypatch.chdir(tmp_path)
    try:
        if isinstance(case.args, list) and any('{copy}' in str(a) for a in case.args): ctx.copy  # made before the setup changes it
        if case.setup: case.setup(ctx)
        shared_before = checkpoint_hashes(ctx.run)
        copy_before = checkpoint_hashes(ctx._copy) if ctx._copy else None
        t0 = time.time()
        code, out, err, tb = run_in_process(case, ctx, monkeypatch)
        seconds = time.time() - t0
        _log(name, code, out, err, tb, None)
        assert tb is None, f"traceback:\n{tb}\nstderr: {err[-2000:]}"
        assert 'Traceback' not in err, err[-3000:]
        lines = [l for l in err.strip().splitlines() if l.strip()]
        if case.expect is None:
            assert code == 0, (code, err[-2000:])
            if case.notice:
                assert any(case.notice in l for l in lines), err[-2000:]
        else:
            assert code == case.code, (code, err[-2000:], out[-500:])
            assert lines and (lines[-1].startswith('error: ') or case.lines is None and 'error: ' in lines[-1]), err[-2000:]
            assert case.expect in lines[-1], lines[-1]
            if case.lines is not None: assert len(lines) == case.lines, lines
        if 'offline' in name: assert seconds < 5, f"took {seconds:.1f}s"
        assert checkpoint_hashes(ctx.run) == shared_before, 'the shared run changed'
        if copy_before is not None:
            after = checkpoint_hashes(ctx._copy)
            changed = [k for k, v in copy_before.items() if after.get(k) != v]
            assert not changed, f'checkpoint files changed: {changed}'
        if case.after: case.after(ctx, out, err)
    finally:
        for f in reversed(ctx.cleanup): f()


# a few cases again as real processes: the console scripts themselves, where a traceback would show on stderr
REAL = ['train lr inf', 'resume with another tokenizer', 'resume a finished run', 'generate stdin not UTF-8',
        'generate max_new_tokens 1e9', 'compare unknown model key', 'data unreadable', 'cache truncated to even size']


@pytest.mark.parametrize('name', REAL)
def test_in_a_real_process(name, shared, tmp_path):
    case, ctx = CASES[name], Ctx(shared, tmp_path)
    try:
        if case.setup: case.setup(ctx)
        argv = [ctx.fmt(a) for a in case.args]
        tool = f'nanoformer_{case.tool}'
        base = {'train': train_base(ctx, argv), 'generate': [], 'compare': ['--no-progress']}[case.tool]
        exe = shutil.which(tool)
        raw = case.stdin.encode() if isinstance(case.stdin, str) else case.stdin
        r = subprocess.run([exe, *base, *argv] if case.tool != 'compare' else [exe, *argv, *base], input=raw, capture_output=True,
                           timeout=300, env=os.environ.copy(), cwd=tmp_path)
        err = r.stderr.decode('utf-8', errors='replace')
        assert 'Traceback' not in err, err[-3000:]
        lines = [l for l in err.strip().splitlines() if l.strip()]
        if case.expect is None: assert r.returncode == 0 and (not case.notice or any(case.notice in l for l in lines)), err[-2000:]
        else: assert r.returncode == case.code and len(lines) == 1 and case.expect in lines[0], err[-2000:]
    finally:
        for f in reversed(ctx.cleanup): f()


def test_enough_cases():
    assert len(CASES) >= 70, len(CASES)
