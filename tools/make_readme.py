"""Write README.md from nbs/index.ipynb (`make readme`), offline: no Quarto.

    python tools/make_readme.py           # regenerate README.md and its figures in README_files/
    python tools/make_readme.py --check   # exit 1, saying what differs, when README.md is stale

The notebook goes through nbdev's own processing (hidden cells and directives dropped, title and description
taken as front matter), then the same markdown conversion as the documentation site (tools/build_docs.py).
Links to chapters become links to the notebooks in nbs/, links to `../FILE` become `FILE`, and nbdev's
automatic links from symbol names to the site are dropped, so that the README depends on nbs/index.ipynb alone. Figures are written as PNG files to README_files/, which is
committed with README.md. Formulas stay as `$...$`, which GitHub renders.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_docs import ROOT, NBS, process_notebook, split_front_matter, notebook_markdown, site_url

README, FILES = ROOT/'README.md', 'README_files'
HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py (`make readme`): edit the notebook, not this file. -->\n'

def link(target:str) -> str|None:
    """Where a link of the index notebook points from the README. The README depends on nbs/index.ipynb alone,
    not on which chapters exist or what they export: links to chapters always point into nbs/, and nbdev's
    automatic links from `symbol` names to the documentation site are dropped (the names stay as code)."""
    f, _, anchor = target.partition('#')
    if target.startswith(site_url()): return None
    if f.startswith('../'): return target[3:]
    if f.endswith('.ipynb'): return f'nbs/{target}'
    return target

def render(index:Path=NBS/'index.ipynb') -> tuple[str, dict]:
    "README text and its files ({path relative to the repository: bytes})."
    nb = process_notebook(index)
    fm = split_front_matter(nb)
    page = notebook_markdown(nb, 'index', link, files_dir=FILES)
    head = HEADER + f"\n# {fm.get('title', 'pixelbert')}\n\n"
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    return head + page.text, page.files

def check(text:str, files:dict) -> list[str]:
    "What differs between the generated README (and its files) and the ones on disk."
    problems = []
    if not README.exists(): problems.append('README.md is missing')
    elif README.read_text() != text:
        import difflib
        diff = list(difflib.unified_diff(README.read_text().splitlines(), text.splitlines(), 'README.md (on disk)',
                                         'README.md (from nbs/index.ipynb)', lineterm='', n=1))
        problems.append('README.md differs from what nbs/index.ipynb gives:\n' + '\n'.join(diff[:40]) +
                        ('\n...' if len(diff) > 40 else ''))
    for rel, data in files.items():
        p = ROOT/rel
        if not p.exists() or p.read_bytes() != data: problems.append(f'{rel} is missing or differs')
    extra = sorted(str(p.relative_to(ROOT)) for p in (ROOT/FILES).glob('*') if str(p.relative_to(ROOT)) not in files)
    problems += [f'{e} is no longer used by README.md' for e in extra]
    return problems

def write(text:str, files:dict):
    README.write_text(text)
    d = ROOT/FILES
    if d.exists():
        for p in d.iterdir():
            if str(p.relative_to(ROOT)) not in files: p.unlink()
    for rel, data in files.items():
        (ROOT/rel).parent.mkdir(parents=True, exist_ok=True)
        if not (ROOT/rel).exists() or (ROOT/rel).read_bytes() != data: (ROOT/rel).write_bytes(data)
    if d.exists() and not any(d.iterdir()): d.rmdir()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', action='store_true', help='only check that README.md is up to date (exit 1 if not)')
    a = ap.parse_args(argv)
    import warnings; warnings.filterwarnings('ignore')
    text, files = render()
    if a.check:
        problems = check(text, files)
        if problems:
            print('README.md is stale: it is generated from nbs/index.ipynb. Run `make readme` '
                  '(python tools/make_readme.py) and commit README.md and README_files/.\n', file=sys.stderr)
            print('\n'.join(problems), file=sys.stderr)
            sys.exit(1)
        print('README.md is up to date with nbs/index.ipynb')
    else:
        write(text, files)
        print(f'wrote README.md' + (f' and {len(files)} file(s) in {FILES}/' if files else ''))

if __name__ == '__main__': main()
