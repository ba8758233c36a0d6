import os, shutil, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    "Every test gets its own token cache and no network, as in CI."
    monkeypatch.setenv('NANOFORMER_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.delenv('WANDB_API_KEY', raising=False)
    yield


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / 'corpus.txt'
    p.write_text(''.join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(2000)))
    return p


def run_cli(*args, cwd=None, timeout=600):
    "Run a console script as a subprocess; return the CompletedProcess."
    exe = shutil.which(args[0]) or args[0]
    return subprocess.run([exe, *map(str, args[1:])], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=os.environ.copy())


def pytest_configure(config):
    config.addinivalue_line('markers', 'llama_cpp: needs llama-cpp-python (built from source; opt-in, skipped without it)')
