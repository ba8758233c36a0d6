"The package as a user installs it: clean modules, declared dependencies, shipped data, a README whose links resolve."
import ast, configparser, re, subprocess, sys, warnings, zipfile
from pathlib import Path
import pytest
from conftest import REPO

MODULES = sorted((REPO / 'nanoformer').glob('*.py'))
SETTINGS = configparser.ConfigParser(delimiters=['='])
SETTINGS.read(REPO / 'settings.ini')
# import name -> distribution name, where they differ
DIST = {'yaml': 'pyyaml'}


def declared(key: str) -> set[str]:
    return {re.split(r'[<>=!~\[ ]', r, 1)[0].lower() for r in SETTINGS['DEFAULT'][key].split()}


@pytest.mark.parametrize('module', MODULES, ids=lambda p: p.name)
def test_module_compiles_without_warnings(module):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # an invalid escape like '\p' is a SyntaxWarning today, an error tomorrow
        compile(module.read_text(encoding='utf-8'), str(module), 'exec')


def test_every_imported_package_is_declared():
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for m in MODULES:
        for node in ast.walk(ast.parse(m.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import): imported |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0: imported.add(node.module.split('.')[0])
    third_party = {DIST.get(n, n).lower() for n in imported - stdlib - {'nanoformer', '__future__'}}
    # transformers is optional (Hugging Face interop raises a one-line error without it) and comes with the dev extra
    missing = third_party - declared('requirements') - (declared('dev_requirements') & {'transformers'})
    assert not missing, f'imported but not declared in settings.ini requirements: {sorted(missing)}'


def test_license_file_matches_settings():
    assert SETTINGS['DEFAULT']['license'] == 'apache2'
    text = (REPO / 'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0' in text


def test_readme_links_resolve():
    readme = (REPO / 'README.md').read_text()
    links = [l.split('#')[0] for l in re.findall(r'\]\(([^)\s]+)\)', readme) if not re.match(r'[a-z]+:', l)]
    assert links, 'README has no relative links'
    broken = [l for l in links if not (REPO / l).exists()]
    assert not broken, broken


def test_wheel_ships_tinyshakespeare(tmp_path):
    "An editable install reads the corpus from the source tree; a built wheel must carry it too."
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel, = tmp_path.glob('nanoformer-*.whl')
    assert 'nanoformer/corpora/tinyshakespeare.txt.gz' in zipfile.ZipFile(wheel).namelist()


def test_no_module_imports_another_modules_private_names():
    private = []
    for m in MODULES:
        for node in ast.walk(ast.parse(m.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('nanoformer')):
                private += [f"{m.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith('_') and a.name != '__future__']
    assert not private, private
