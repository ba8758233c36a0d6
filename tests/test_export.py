"Export for llama.cpp (GGUF) and Hugging Face: parity with transformers' readers, the tokenizer in the file, `nanoformer_export` and its one-line errors, interrupted exports; llama.cpp itself behind the `llama_cpp` marker."
import importlib.util, io, json, os, shutil, signal, subprocess, sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
import pytest
import torch
from conftest import REPO
from fastcore.script import anno_parser
from nanoformer.config import ModelConfig
from nanoformer.model import GPT, save_pretrained
from nanoformer.data import ByteTokenizer, CharTokenizer, BPETokenizer, load_documents
from nanoformer.generate import generate
from nanoformer.hf_interop import export_hf, import_hf, max_logit_error
from nanoformer.train import TrainConfig, train, latest_checkpoint
from nanoformer import export
from nanoformer.export import write_gguf, nanoformer_export, load_for_export, gguf_rounded

transformers = pytest.importorskip('transformers')
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
# 3x the largest logit change rounding caused over 5 seeds x 3 models in nbs/33_export.ipynb (f16 2.4e-2, q8_0 7.4e-1; logits of std ≈ 1.4)
ROUNDING_BOUND = {'f16': 0.075, 'q8_0': 2.3}


def random_model(seed=0, **kw):
    "A random Llama-style model with logits spread over several units and random norm gains."
    torch.manual_seed(seed)
    model = GPT(ModelConfig(**{**dict(vocab_size=258, d_model=64, n_layers=2, n_heads=4, block_size=64, init_std=0.2), **kw})).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'norm' in n: p.add_(torch.randn_like(p) * 0.1)
    return model


def gguf_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(Path(path).parent, gguf_file=Path(path).name, dtype=torch.float32).eval()


IDX = torch.randint(0, 258, (2, 48), generator=torch.Generator().manual_seed(0))
CASES = {'gqa tied': dict(n_kv_heads=2), 'mha untied': dict(tie_embeddings=False),
         'mqa wide head': dict(attention='mqa', head_dim=32, rope_theta=500000.0, norm_eps=1e-6)}


@pytest.mark.parametrize('case', CASES)
def test_gguf_f32_equals_ours_in_transformers(case, tmp_path):
    ours = random_model(**CASES[case])
    theirs = gguf_model(write_gguf(ours, ByteTokenizer(), tmp_path / 'm.gguf'))
    assert max_logit_error(ours, theirs, IDX) < 1e-4
    prompt = IDX[:, :8]
    assert torch.equal(generate(ours, prompt, 32, temperature=0),
                       theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False, eos_token_id=None))


@pytest.mark.parametrize('dtype', ['f16', 'q8_0'])
def test_gguf_rounded_weights(dtype, tmp_path):
    ours = random_model(3, n_kv_heads=2)
    theirs = gguf_model(write_gguf(ours, ByteTokenizer(), tmp_path / 'm.gguf', dtype=dtype))
    assert max_logit_error(gguf_rounded(ours, dtype), theirs, IDX) < 1e-4  # exactly the rounded weights
    assert 1e-6 < max_logit_error(ours, theirs, IDX) < ROUNDING_BOUND[dtype]


def test_gguf_tokenizers_agree_with_transformers(tmp_path):
    docs = load_documents('tinyshakespeare', 'train')
    texts = ["ROMEO:\nBut soft!  What light through yonder window breaks?\n\n", "First Citizen:\nBefore we proceed any further, hear me speak.",
             "  two  spaces,\ttabs\t and 3 digits 1234567 -- I'll, we've.\n\n", "héllo wörld, naïve café: 東京 🙂 — ça va?"]
    for kind, tok in {'byte': ByteTokenizer(), 'char': CharTokenizer(docs[0]), 'bpe': BPETokenizer.build(docs, 400)}.items():
        f = write_gguf(random_model(vocab_size=tok.vocab_size + 2), tok, tmp_path / f'{kind}.gguf')
        hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=f.name)
        usable = [t for t in texts if kind != 'char' or set(t) <= set(tok.chars)]
        assert len(usable) >= 2
        for t in usable: assert hf_tok.encode(t, add_special_tokens=False) == tok.encode(t), (kind, t)


def test_gguf_refuses_what_llama_cpp_cannot_run(tmp_path):
    for kw, msg in ((dict(attention='diff'), "attention='diff' (DiffAttention)"), (dict(attention='mla'), "attention='mla' (MultiHeadLatentAttention)"),
                    (dict(attention='ngpt'), "NGPTAttention"), (dict(attention='linear'), "LinearAttention"), (dict(attention='sigmoid'), "SigmoidAttention"),
                    (dict(window=16), "window=16"), (dict(activation='gelu'), "activation='gelu'")):
        with pytest.raises(Exception, match=msg.replace('(', r'\(').replace(')', r'\)')):
            write_gguf(GPT(ModelConfig(vocab_size=258, **kw)), ByteTokenizer(), tmp_path / 'x.gguf')
    assert not list(tmp_path.iterdir())


HF_CASES = {'mistral': dict(n_kv_heads=2, window=8), 'ministral': dict(n_layers=3, window=8, window_pattern='LLG'),
            'deepseek_v3': dict(attention='mla', kv_lora_rank=24, rope_head_dim=8),
            'deepseek_v3 q_lora': dict(attention='mla', q_lora_rank=32, kv_lora_rank=24, rope_head_dim=8, norm_eps=1e-6, tie_embeddings=False)}


@pytest.mark.parametrize('case', HF_CASES)
def test_hf_windowed_and_mla_round_trip(case, tmp_path):
    ours = random_model(**{**dict(vocab_size=96, d_model=48), **HF_CASES[case]})
    theirs = transformers.AutoModelForCausalLM.from_pretrained(export_hf(ours, tmp_path / 'hf')).eval()
    assert theirs.config.model_type == case.split()[0]
    idx = IDX % 96
    assert max_logit_error(ours, theirs, idx) < 1e-4
    prompt = idx[:, :6]
    assert torch.equal(generate(ours, prompt, 30, temperature=0),
                       theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False, eos_token_id=None))
    back = import_hf(tmp_path / 'hf')
    assert max_logit_error(back, theirs, idx) < 1e-4


@pytest.mark.parametrize('case', ['mistral', 'ministral', 'deepseek interleaved', 'deepseek halves, q_lora'])
def test_hf_import_of_transformers_models(case, tmp_path):
    small = dict(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                 initializer_range=0.2, bos_token_id=None, eos_token_id=None)
    ds = dict(small, num_key_value_heads=4, kv_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=12, v_head_dim=12, first_k_dense_replace=2, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    hf = {'mistral': lambda: transformers.MistralForCausalLM(transformers.MistralConfig(**small, num_key_value_heads=2, sliding_window=8)),
          'ministral': lambda: transformers.MinistralForCausalLM(transformers.MinistralConfig(**small, num_key_value_heads=2, head_dim=12, sliding_window=8,
                                                                                             layer_types=['sliding_attention', 'full_attention'])),
          'deepseek interleaved': lambda: transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(**ds, q_lora_rank=None)),
          'deepseek halves, q_lora': lambda: transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(**ds, q_lora_rank=32, rope_interleave=False)),
          }[case]().eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if 'norm' in n: p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / 'hf')
    ours = import_hf(tmp_path / 'hf')
    idx = IDX % 96
    assert max_logit_error(ours, hf, idx) < 1e-4
    prompt = idx[:, :6]
    assert torch.equal(generate(ours, prompt, 30, temperature=0),
                       hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False))


# ---- the command line
@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A small model trained briefly on tinyshakespeare with the byte tokenizer; returns its run directory."
    tmp = tmp_path_factory.mktemp('export')
    old = os.environ.get('NANOFORMER_CACHE')
    os.environ['NANOFORMER_CACHE'] = str(tmp / 'cache')
    try:
        with redirect_stdout(io.StringIO()):
            res = train(TrainConfig(dataset='tinyshakespeare', tokenizer='byte', max_steps=20, batch_size=8, eval_iters=1, eval_every=0,
                                    out_dir=str(tmp / 'runs'), run_name='r', progress=False),
                        ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, block_size=64))
    finally:
        if old is None: os.environ.pop('NANOFORMER_CACHE', None)
        else: os.environ['NANOFORMER_CACHE'] = old
    return Path(res['run_dir'])


def cli(*args):
    "nanoformer_export's command line, run in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            ns = vars(anno_parser(nanoformer_export.__wrapped__).parse_args(list(map(str, args))))
            ns.pop('pdb'), ns.pop('xtra')
            code = nanoformer_export.__wrapped__(**ns) or 0
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()


def test_console_script_exports_both_formats(run, tmp_path):
    exe = shutil.which('nanoformer_export')
    assert exe, "nanoformer_export is not installed: pip install -e ."
    for fmt, dtype in (('gguf', 'f16'), ('hf', 'f32')):
        r = subprocess.run([exe, '--checkpoint_path', str(run), '--format', fmt, '--dtype', dtype, '--out', str(tmp_path / fmt)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    model, tok = load_for_export(run)
    text = "ROMEO:\nWhat light"
    ids = torch.tensor([tok.encode(text)])
    assert max_logit_error(gguf_rounded(model, 'f16'), gguf_model(tmp_path / 'gguf' / 'model-f16.gguf'), ids) < 1e-4
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / 'hf')
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / 'hf')(text)['input_ids'] == tok.encode(text)
    assert max_logit_error(model, hf, ids) < 1e-4


def test_bad_input_is_one_line_and_exit_2(run, tmp_path):
    ckpt = latest_checkpoint(run)
    (tmp_path / 'truncated').mkdir()
    shutil.copytree(ckpt, tmp_path / 'truncated' / 'c')
    (tmp_path / 'truncated' / 'c' / 'model.safetensors').write_bytes(b'\x00' * 10)
    shutil.copytree(ckpt, tmp_path / 'badjson')
    (tmp_path / 'badjson' / 'config.json').write_text('{')
    save_pretrained(GPT(ModelConfig.from_json(ckpt / 'config.json').replace(attention='diff')), tmp_path / 'diff')
    shutil.copytree(ckpt / 'tokenizer', tmp_path / 'diff' / 'tokenizer')
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('x')
    cases = {'unsupported variant': (['--checkpoint_path', tmp_path / 'diff', '--format', 'gguf', '--out', tmp_path / 'o1'], "attention='diff' (DiffAttention)"),
             'unsupported variant, hf': (['--checkpoint_path', tmp_path / 'diff', '--format', 'hf', '--out', tmp_path / 'o2'], "attention='diff' (DiffAttention)"),
             'missing': (['--checkpoint_path', tmp_path / 'nowhere', '--format', 'gguf', '--out', tmp_path / 'o3'], 'does not exist'),
             'corrupt weights': (['--checkpoint_path', tmp_path / 'truncated' / 'c', '--format', 'gguf', '--out', tmp_path / 'o4'], 'model.safetensors'),
             'corrupt config': (['--checkpoint_path', tmp_path / 'badjson', '--format', 'hf', '--out', tmp_path / 'o5'], 'not valid JSON'),
             'non-empty out': (['--checkpoint_path', run, '--format', 'gguf', '--out', tmp_path / 'full'], '--overwrite'),
             'bad dtype': (['--checkpoint_path', run, '--format', 'gguf', '--dtype', 'q4_0', '--out', tmp_path / 'o6'], "dtype='q4_0'"),
             'no format': (['--checkpoint_path', run, '--out', tmp_path / 'o7'], '--format is required')}
    for what, (args, msg) in cases.items():
        code, out, err = cli(*args)
        assert code == 2 and out == '', (what, code, out, err)
        assert err.startswith('error: ') and err.count('\n') == 1 and msg in err, (what, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['badjson', 'diff', 'full', 'truncated']  # nothing written
    assert [p.name for p in (tmp_path / 'full').iterdir()] == ['keep.txt']
    code, out, err = cli('--checkpoint_path', run, '--format', 'gguf', '--out', tmp_path / 'full', '--overwrite')
    assert code == 0 and [p.name for p in (tmp_path / 'full').iterdir()] == ['model-f32.gguf'], err


def test_interrupted_export_leaves_no_file_under_the_final_name(run, tmp_path, monkeypatch):
    real = export._Writer.write_tensors_to_file
    def interrupted(self, **kw):
        self.fout[0].write(b'partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(export._Writer, 'write_tensors_to_file', interrupted)
    code, out, err = cli('--checkpoint_path', run, '--format', 'gguf', '--out', tmp_path / 'out')
    assert code == 130 and err == 'interrupted\n'
    assert not list(tmp_path.iterdir())  # neither the directory nor a temporary one
    model, tok = load_for_export(run)
    with pytest.raises(KeyboardInterrupt): write_gguf(model, tok, tmp_path / 'direct.gguf')
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(export._Writer, 'write_tensors_to_file', real)
    write_gguf(model, tok, tmp_path / 'direct.gguf')
    assert [p.name for p in tmp_path.iterdir()] == ['direct.gguf']


def test_killed_export_leaves_no_file_under_the_final_name(run, tmp_path):
    "SIGKILL halfway through the tensors: nothing can clean up, but the final name never holds a partial file."
    script = (f"import os, signal\nfrom nanoformer import export\n"
              f"def die(self, **kw):\n    self.fout[0].write(b'partial'); self.fout[0].flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
              f"export._Writer.write_tensors_to_file = die\n"
              f"export.nanoformer_export.__wrapped__(checkpoint_path={str(run)!r}, format='gguf', out={str(tmp_path / 'out')!r})\n")
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not (tmp_path / 'out').exists()
    leftovers = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert leftovers and all(p.name.endswith('.tmp') for p in leftovers)  # only the temporary file, under its temporary name


# ---- llama.cpp itself: opt-in (llama-cpp-python compiles llama.cpp when installed)
def _bench():
    spec = importlib.util.spec_from_file_location('llama_cpp_bench', REPO / 'benchmarks' / 'llama_cpp.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.llama_cpp
@pytest.mark.parametrize('dtype', ['f32', 'f16', 'q8_0'])
def test_llama_cpp_greedy_tokens_from_text(dtype, run, tmp_path):
    pytest.importorskip('llama_cpp')
    bench = _bench()
    code, _, err = cli('--checkpoint_path', run, '--format', 'gguf', '--dtype', dtype, '--out', tmp_path / 'g')
    assert code == 0, err
    model, tok = load_for_export(run)
    if dtype != 'f32': model = gguf_rounded(model, dtype)
    r = bench.compare(model, tok, tmp_path / 'g' / f'model-{dtype}.gguf', "ROMEO:\nBut soft, what light", 32, threads=1)
    assert r['prompt_ids_equal'], r  # llama.cpp's tokenizer reads the file's vocabulary as ours
    # f32: the same function, so the same 32 tokens; f16/q8_0: llama.cpp also rounds activations (we do not), so only the start must agree
    assert r['same_tokens'] == 32 if dtype == 'f32' else r['same_tokens'] >= 1, r
