"""The stored showdown results regenerate: `nanoformer_compare <configs.json> --resume`, run where the page's command runs, finds
every stored run finished with exactly the planned configs, trains nothing, and writes tables byte-identical to the stored ones.

The stored runs are copied to a temporary folder first (the same relative paths, since each `result.json` records where its run
went), so the repository is never written to."""
import shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import REPO
from nanoformer.compare import _tuning_run, finished, pick_lrs, plan_runs, read_csv, read_spec

SHOWDOWN = REPO / 'nbs' / 'results' / 'showdown'
STORED = sorted(p.name for p in SHOWDOWN.iterdir() if (p / 'summary.csv').is_file())
TABLES = ('runs.csv', 'summary.csv', 'curves.csv', 'lr_sweep.csv')


def test_every_comparison_is_stored():
    assert {'tinyshakespeare', 'stdlib'} <= set(STORED), STORED


@pytest.mark.parametrize('name', STORED)
def test_stored_tables_regenerate_with_resume(name, tmp_path, monkeypatch):
    out = Path('results') / 'showdown' / name  # the page's command, run from nbs/ (or the repository root, through its `results` link)
    dst = tmp_path / out
    shutil.copytree(SHOWDOWN / name, dst, ignore=shutil.ignore_patterns('models', *TABLES, '*.png'))
    monkeypatch.chdir(tmp_path)
    spec, sweep = read_spec(out / 'configs.json'), read_csv(SHOWDOWN / name / 'lr_sweep.csv') if (SHOWDOWN / name / 'lr_sweep.csv').is_file() else []
    runs = {r['name']: r for r in spec['runs']}
    planned = [_tuning_run(spec, runs[row['name']], out, None, row['lr']) for row in sweep] + plan_runs(spec, out, lrs=pick_lrs(sweep)[0] if sweep else None)
    stale = [p['tc'].run_name for p in planned if finished(p) is None]
    assert not stale, f'{name}: stored runs missing or not matching the plan: {stale}'  # checked first: the command below must train nothing
    metrics = {p: p.stat().st_mtime_ns for p in dst.glob('*/*/metrics.jsonl')}
    assert metrics, f'{name}: no stored runs'
    res = subprocess.run([sys.executable, '-c', 'from nanoformer.compare import nanoformer_compare; nanoformer_compare()',
                          str(out / 'configs.json'), '--out', str(out), '--resume', '--no-progress'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert {p: p.stat().st_mtime_ns for p in dst.glob('*/*/metrics.jsonl')} == metrics, 'a stored run was trained again'
    for table in TABLES:
        if (SHOWDOWN / name / table).is_file():
            assert (dst / table).read_bytes() == (SHOWDOWN / name / table).read_bytes(), f'{name}/{table} differs from the stored one'
