"The notebooks as documents: no stored error outputs, and (once `nbdev_docs` has run) a page for every notebook."
import json, os, re
from pathlib import Path
import pytest
from conftest import REPO

NBS = sorted((REPO / 'nbs').glob('[0-9][0-9]_*.ipynb'))


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_no_error_outputs(nb):
    cells = json.loads(nb.read_text())['cells']
    errors = [o.get('ename') for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors, errors


def test_every_notebook_has_colab_badge():
    missing = [nb.stem for nb in NBS if 'colab-badge.svg' not in nb.read_text()]
    assert not missing, missing


DOCS = REPO / '_docs'
# .ci/run sets NANOFORMER_DOCS_BUILT=1 after nbdev_docs: the site checks then run and a missing site fails them
BUILT = os.environ.get('NANOFORMER_DOCS_BUILT') == '1'


@pytest.mark.skipif(not BUILT, reason='site checks run after nbdev_docs, with NANOFORMER_DOCS_BUILT=1 (as .ci/run does)')
def test_site_has_a_page_per_notebook_and_the_showdown_embeds_its_plots():
    assert (DOCS / 'index.html').exists(), 'nbdev_docs wrote no _docs/index.html'
    pages = {p.stem for p in DOCS.glob('*.html')}
    missing = [nb.stem for nb in NBS if nb.stem.split('_', 1)[1] not in pages]  # nbdev drops the number: 02_attention -> attention.html
    assert not missing, missing
    showdown = (DOCS / 'showdown.html').read_text()
    assert showdown.count('<img') >= 2, 'the showdown page lost its plots'
    linked = [src for src in re.findall(r'<img[^>]*src="([^"]+)"', showdown) if not src.startswith(('data:', 'http'))]
    assert linked, 'the showdown page links none of its stored plots'
    assert all((DOCS / src).is_file() for src in linked), [src for src in linked if not (DOCS / src).is_file()]
    assert 'navbar' in showdown and 'sidebar' in showdown
