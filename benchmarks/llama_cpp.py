"""llama.cpp (through llama-cpp-python) against nanoformer on the same exported model: the same text prompt tokenized by
both, 32 greedy tokens from both, and decoding speed at batch 1 on the CPU.

    pip install llama-cpp-python            # compiles llama.cpp: many minutes on a small machine
    python benchmarks/llama_cpp.py [--steps 300] [--new_tokens 32] [--threads N] [--out nbs/results/export/llama_cpp.json]

Trains a small Llama-style model on tinyshakespeare (byte tokenizer, then a 512-token BPE), exports each as GGUF in f32,
f16 and q8_0 with `nanoformer_export`, and for each file compares llama.cpp's greedy continuation (the argmax of its
logits, step by step) with ours (`generate(temperature=0)` on the exported weights, rounded as the file stores them for
f16 and q8_0). llama.cpp also rounds its activations for f16 and q8_0 matmuls, so there a late token may differ;
f32 must agree token for token. Tokens/s are timed over the decoding steps only (the prompt is evaluated first), best
of three, with the same number of threads for both; llama.cpp keeps a float32 KV cache here, as we do (its default is f16).
"""
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or '.').resolve() != HERE]  # this file's name would shadow the llama_cpp package
import numpy as np
import torch


def llama_cpp_greedy(path, prompt_ids: list[int], n: int, threads: int) -> tuple[list[int], float]:
    "llama.cpp's `n` greedy tokens after `prompt_ids`, and its decoding speed in tokens/s (best of three)."
    from llama_cpp import Llama
    # logits_all: llama-cpp-python keeps logits only then; a float32 KV cache (type 0), as ours, so f32 files compute the same function
    llm = Llama(model_path=str(path), n_ctx=len(prompt_ids) + n + 1, n_threads=threads, n_threads_batch=threads, logits_all=True,
                type_k=0, type_v=0, verbose=False)
    best, out = 0.0, []
    for _ in range(3):
        llm.reset()
        llm.eval(prompt_ids)
        out = [int(np.argmax(llm.scores[llm.n_tokens - 1]))]
        t0 = time.perf_counter()
        for _ in range(n - 1):
            llm.eval([out[-1]])
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        best = max(best, (n - 1) / (time.perf_counter() - t0))
    llm.close()
    return out, best


def ours_greedy(model, prompt_ids: list[int], n: int) -> tuple[list[int], float]:
    "Our `n` greedy tokens and decoding speed (tokens/s after the first, which includes the prompt; best of three)."
    from nanoformer.generate import stream_generate
    best, out = 0.0, []
    for _ in range(3):
        steps = stream_generate(model, torch.tensor([prompt_ids]), n, temperature=0)
        out = [int(next(steps)[0])]
        t0 = time.perf_counter()
        out += [int(t[0]) for t in steps]
        best = max(best, (n - 1) / (time.perf_counter() - t0))
    return out, best


def compare(model, tok, path, text: str, n: int = 32, threads: int = 1) -> dict:
    "Tokenize `text` with llama.cpp and with `tok`, then decode `n` greedy tokens with both; what agrees and how fast."
    from llama_cpp import Llama
    torch.set_num_threads(threads)
    ids = tok.encode(text)
    vocab_only = Llama(model_path=str(path), vocab_only=True, verbose=False)
    theirs_ids = vocab_only.tokenize(text.encode('utf-8'), add_bos=False, special=False)
    vocab_only.close()
    theirs, theirs_speed = llama_cpp_greedy(path, ids, n, threads)
    ours, ours_speed = ours_greedy(model.eval(), ids, n)
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), n)
    return dict(prompt_ids_equal=theirs_ids == ids, prompt_tokens=len(ids), same_tokens=same, ours_tok_s=round(ours_speed, 1),
                llama_cpp_tok_s=round(theirs_speed, 1), continuation=tok.decode(ours))


def _cpu() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--steps', type=int, default=300, help='training steps of each model')
    ap.add_argument('--new_tokens', type=int, default=32)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=str(HERE.parent / 'nbs' / 'results' / 'export' / 'llama_cpp.json'))
    args = ap.parse_args()
    import llama_cpp
    from nanoformer.config import ModelConfig
    from nanoformer.train import TrainConfig, train
    from nanoformer.export import export_checkpoint, load_for_export, gguf_rounded
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault('NANOFORMER_CACHE', str(tmp / 'cache'))
    mc = ModelConfig(d_model=256, n_layers=4, n_heads=8, n_kv_heads=2, block_size=128, tie_embeddings=False)
    text = "ROMEO:\nBut soft, what light"
    runs = []
    for tokenizer in ('byte', 'bpe'):
        run = train(TrainConfig(dataset='tinyshakespeare', tokenizer=tokenizer, bpe_vocab_size=512, max_steps=args.steps, batch_size=16,
                                lr=3e-3, eval_every=0, eval_iters=2, out_dir=str(tmp / 'runs'), run_name=tokenizer, progress=False), mc)['run_dir']
        model, tok = load_for_export(run)
        for dtype in ('f32', 'f16', 'q8_0'):
            f = export_checkpoint(run, 'gguf', tmp / f'{tokenizer}-{dtype}', dtype)
            r = compare(model if dtype == 'f32' else gguf_rounded(model, dtype), tok, f, text, args.new_tokens, args.threads)
            runs.append(dict(tokenizer=tokenizer, dtype=dtype, params=model.num_params(), file_MB=round(f.stat().st_size / 1e6, 2), **r))
            print(json.dumps(runs[-1]), flush=True)
    res = dict(llama_cpp_python=llama_cpp.__version__, torch=torch.__version__, threads=args.threads, machine=_cpu(),
               model=f"d_model {mc.d_model}, {mc.n_layers} layers, {mc.n_heads} heads over {mc.n_kv_heads} KV heads, trained {args.steps} steps on tinyshakespeare",
               prompt=text, new_tokens=args.new_tokens, runs=runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, ensure_ascii=False) + '\n')
    print(f"wrote {args.out}")


if __name__ == '__main__':
    main()
