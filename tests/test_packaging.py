"""The wheel built from the repository installs with pip into a fresh virtual environment, and its console
scripts run there.

How: the repository's package files are copied to a temporary folder (so nothing is written into the working
tree), `pip wheel --no-deps` builds the wheel there (with the development environment's setuptools when it is
recent enough, else in pip's isolated build environment), `python -m venv` makes a fresh virtual
environment (with its own pip), and that pip installs the wheel with `--no-deps`.

What is not tested here, deliberately: downloading and installing the dependencies (torch alone is about 5 GB
and two minutes). Instead, a `.pth` file in the fresh environment appends the development environment's
site-packages to `sys.path`, so torch, transformers, ... are found there. The fresh environment's own
site-packages comes first on `sys.path`, and the tests check that `pixelbert` is imported from the installed
wheel, not from the repository or from the development environment's editable install (`.pth` files inside
an appended folder are not processed, so the editable install's path hook never loads). The commands run
from an empty temporary folder, so the repository is not on `sys.path` either.
"""
import shutil, subprocess, sys, sysconfig, tomllib, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())
SCRIPTS = ['pixelbert-synth', 'pixelbert-pretrain', 'pixelbert-finetune', 'pixelbert-eval', 'pixelbert-viz',
           'pixelbert-demo']

def run(cmd, cwd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)

@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp('src')
    for f in ['pyproject.toml', 'README.md', 'LICENSE']:
        if (ROOT/f).exists(): shutil.copy(ROOT/f, src/f)
    shutil.copytree(ROOT/'pixelbert', src/'pixelbert', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    dist = tmp_path_factory.mktemp('dist')
    cmd = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', dist, src]
    # the development environment's setuptools first (fast, offline); if it is too old for pyproject.toml,
    # pip's usual isolated build, which fetches the build requirements from the package index
    r = run(cmd[:5] + ['--no-build-isolation'] + cmd[5:], cwd=src)
    if r.returncode: r2 = run(cmd, cwd=src)
    assert r.returncode == 0 or r2.returncode == 0, f'pip wheel failed:\n{r.stdout}\n{r.stderr}\n{r2.stdout}\n{r2.stderr}'
    wheels = list(dist.glob('pixelbert-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]

@pytest.fixture(scope='module')
def venv(tmp_path_factory, wheel) -> Path:
    env = tmp_path_factory.mktemp('venv')/'env'
    r = run([sys.executable, '-m', 'venv', env], cwd=env.parent)
    assert r.returncode == 0, r.stderr
    py = env/'bin'/'python'
    site = Path(run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], cwd=env).stdout.strip())
    # the dependencies come from the development environment (see the module docstring)
    (site/'zz_dev_dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = run([py, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', wheel], cwd=env.parent)
    assert r.returncode == 0, f'pip install of the wheel failed:\n{r.stdout}\n{r.stderr}'
    return env

def test_wheel_contains_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = sorted(f'pixelbert/{p.name}' for p in (ROOT/'pixelbert').glob('*.py'))
    assert modules, 'no pixelbert/*.py in the repository'
    missing = [m for m in modules if m not in names]
    assert not missing, f'modules missing from {wheel.name}: {missing}'
    recipes = sorted(f'pixelbert/recipes/{p.name}' for p in (ROOT/'pixelbert'/'recipes').glob('*.yaml'))
    assert recipes and not [r for r in recipes if r not in names], f'{wheel.name} lacks the recipes (package data)'

def test_wheel_declares_the_console_scripts(wheel):
    z = zipfile.ZipFile(wheel)
    ep = next(n for n in z.namelist() if n.endswith('.dist-info/entry_points.txt'))
    text = z.read(ep).decode()
    for s in SCRIPTS: assert f'{s} = ' in text, f'{s} is not declared in the wheel ({ep})'
    assert set(SCRIPTS) == set(PYPROJECT['project']['scripts']), 'pyproject.toml and this test disagree on the scripts'

def test_import_and_version_from_the_installed_wheel(venv, tmp_path):
    r = run([venv/'bin'/'python', '-c', 'import pixelbert; print(pixelbert.__version__); print(pixelbert.__file__)'],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    version, where = r.stdout.split()
    assert version == pixelbert_version()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f'pixelbert was imported from {where}, not from the wheel'

def pixelbert_version() -> str:
    import re
    return re.search(r'^__version__\s*=\s*["\']([^"\']+)', (ROOT/'pixelbert'/'__init__.py').read_text(), re.M).group(1)

@pytest.mark.parametrize('script', SCRIPTS)
def test_console_script_help(venv, tmp_path, script):
    exe = venv/'bin'/script
    assert exe.exists(), f'{script} was not installed into the fresh environment'
    r = run([exe, '--help'], cwd=tmp_path, timeout=180)
    assert r.returncode == 0, f'`{script} --help` failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}'
    assert 'usage' in r.stdout.lower(), f'`{script} --help` printed no usage:\n{r.stdout}'
