"The notebooks as sources and as stored pages, read without running them: no path outside the repository, no machine paths or progress bars in stored outputs, no picture stored twice, prose about the library only."
import base64, hashlib, json, re
from pathlib import Path
import pytest
from conftest import REPO

NBS = sorted((REPO / 'nbs').glob('*.ipynb'))
ids = lambda p: p.stem


def cells(nb: Path) -> list[dict]: return json.loads(nb.read_text())['cells']

def source(cell: dict) -> str: return ''.join(cell['source'])

def exported(cell: dict) -> bool: return re.match(r'\s*#\|\s*export', source(cell)) is not None

def output_texts(cell: dict):
    "Every text a stored output shows: streams, tracebacks and text-like mime bundles (images excluded)."
    for o in cell.get('outputs', []):
        if 'text' in o: yield ''.join(o['text'])
        if 'traceback' in o: yield '\n'.join(o['traceback'])
        for mime, v in o.get('data', {}).items():
            if mime.startswith('text/') or mime.endswith('json'): yield ''.join(v) if isinstance(v, list) else json.dumps(v)

def hits(pattern: re.Pattern, texts) -> list[str]:
    "Each match of `pattern` in `texts` (cell id, text), with a little context."
    return [f"{cid}: …{t[max(0, m.start() - 40):m.end() + 40]!r}…" for cid, t in texts for m in pattern.finditer(t)]


# Reading outside the repository: up past its root, absolute machine paths, user caches, the system temp folder
# (a cache there outlives the run), or the old shared data folder. The library's own default cache (`~/.cache/nanoformer`
# in an exported cell) is for users; notebooks set NANOFORMER_CACHE, so `~/.cache` is only refused outside `#| export` cells.
OUTSIDE = re.compile(r'\.\./\.\./|(?<![\w.])/(?:tmp|root|home)/|shared/data|gettempdir|Path\.home\(\)')
USER_CACHE = re.compile(r'~/\.cache')

@pytest.mark.parametrize('nb', NBS, ids=ids)
def test_code_reads_nothing_outside_the_repository(nb):
    code = [c for c in cells(nb) if c['cell_type'] == 'code']
    found = hits(OUTSIDE, [(c.get('id'), source(c)) for c in code])
    found += hits(USER_CACHE, [(c.get('id'), source(c)) for c in code if not exported(c)])
    found += hits(re.compile('shared/data'), [(c.get('id'), source(c)) for c in cells(nb) if c['cell_type'] == 'markdown'])
    assert not found, '\n'.join(found)


MACHINE_PATH = re.compile(r'/tmp/|/root/|/home/|/private/var')

@pytest.mark.parametrize('nb', NBS, ids=ids)
def test_outputs_hold_no_machine_paths(nb):
    found = hits(MACHINE_PATH, [(c.get('id'), t) for c in cells(nb) for t in output_texts(c)])
    assert not found, '\n'.join(found)


# tqdm's frame: `desc:  40%|####      | 4/10 [00:01<00:02,  3.1it/s]` (any unit), or a notebook widget
PROGRESS = re.compile(r'\d%\||it/s\]|\[\d\d:\d\d<')
WIDGET = 'application/vnd.jupyter.widget-view+json'

@pytest.mark.parametrize('nb', NBS, ids=ids)
def test_outputs_hold_no_progress_bars(nb):
    found = hits(PROGRESS, [(c.get('id'), t) for c in cells(nb) for t in output_texts(c)])
    found += [f"{c.get('id')}: widget output" for c in cells(nb) for o in c.get('outputs', []) if WIDGET in o.get('data', {})]
    assert not found, '\n'.join(found)


def stored_pngs() -> dict[str, Path]:
    "sha256 → path of every PNG under results/ (the stored copies the docs can link; nbs/results or a root results/)."
    roots = {r.resolve(): r for r in (REPO / 'nbs' / 'results', REPO / 'results') if r.is_dir()}
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(REPO) for r in roots.values() for p in r.rglob('*.png')}

@pytest.mark.parametrize('nb', NBS, ids=ids)
def test_no_embedded_image_duplicates_a_stored_png(nb):
    "A picture stored under results/ is linked, not embedded again as base64 in the notebook."
    pngs = stored_pngs()
    found = []
    for c in cells(nb):
        for o in c.get('outputs', []):
            b64 = o.get('data', {}).get('image/png')
            if b64 is None: continue
            digest = hashlib.sha256(base64.b64decode(''.join(b64) if isinstance(b64, list) else b64)).hexdigest()
            if digest in pngs: found.append(f"{c.get('id')}: embeds {pngs[digest]}")
    assert not found, '\n'.join(found)


# Prose about how the documents came to be (issues, sessions, what hardware someone had), not about the library
NOT_ABOUT_THE_LIBRARY = re.compile(r'\bthe issue\b|\bissue asks\b|\bhas been available to\b|\bthis session\b', re.I)

@pytest.mark.parametrize('nb', NBS, ids=ids)
def test_prose_speaks_about_the_library_only(nb):
    "Markdown cells, and Markdown a cell renders as its output."
    texts = [(c.get('id'), source(c)) for c in cells(nb) if c['cell_type'] == 'markdown']
    texts += [(c.get('id'), ''.join(o['data']['text/markdown'])) for c in cells(nb) for o in c.get('outputs', [])
              if 'text/markdown' in o.get('data', {})]
    found = hits(NOT_ABOUT_THE_LIBRARY, texts)
    assert not found, '\n'.join(found)


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_notebooks_that_tokenize_use_their_own_cache(nb):
    "A notebook that builds a token store or trains points NANOFORMER_CACHE at its own temporary folder, never the user's cache."
    code = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
    if re.search(r'prepare_data\(|\btrain\(tc|\btrain\(\*|nanoformer_train\(|nanoformer_compare\(', code):
        assert 'NANOFORMER_CACHE' in code, 'sets no NANOFORMER_CACHE of its own'
