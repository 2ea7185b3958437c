"""Build the documentation site into docs/ (`make docs`), offline: no Quarto, no network.

    python tools/build_docs.py [--out DIR] [--jobs N] [--keep TMP]

1. nbdev's own notebook processing (`nbdev.processors.FilterDefaults`, what `nbdev.serve.proc_nbs` runs for
   Quarto): hidden cells and directives dropped, `#| export` cells replaced by `show_doc` output, `show_doc`
   cells executed, the title and description turned into front matter. It runs in Python, so nothing tries to
   install Quarto. One change (`doc_filter`): a cell that mixes imports with other code runs only its imports.
2. The Quarto-only parts are cleaned away and every processed notebook becomes one markdown page
   (`notebook_markdown` below: code, text outputs, committed figures as PNG files, `show_doc` markdown as is).
3. mkdocs with the Material theme (from PyPI) renders the pages: navigation in reading order (index first,
   then nbs/[0-9]*.ipynb sorted by name), an API index page, client-side search, no notebook execution.
   LaTeX becomes MathML at build time (docs_src/hooks.py), so pages need no JavaScript from outside.

The same markdown conversion writes README.md (tools/make_readme.py). Notebooks whose names start with `_`
are scratch and are not rendered. The build is deterministic for the same notebooks (no dates, no sitemap),
so rebuilding does not churn the committed docs/.
"""
from __future__ import annotations
import argparse, base64, html, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SITE_SRC = ROOT/'docs_src'

# ---------------------------------------------------------------------------------------------------------
# Which notebooks, in which order

def chapter_notebooks(nbs:Path=NBS) -> list[Path]:
    "The notebooks that make the book, in reading order: index first, then nbs/[0-9]*.ipynb by name."
    index = nbs/'index.ipynb'
    if not index.exists(): raise SystemExit(f"{index} is missing: it is the front page and the README's source")
    return [index] + sorted(p for p in nbs.glob('[0-9]*.ipynb') if not p.name.startswith('_'))

# ---------------------------------------------------------------------------------------------------------
# 1. nbdev's processing

_EXEC_HINT = ("To render `show_doc`, the docs build runs every `#| export` cell, every `show_doc` cell, every "
              "import-only cell and the import statements of other cells, in order, and nothing else. A cell among "
              "those that needs a name defined by a cell that is not run fails here: define it in an exported cell, "
              "or move the code that needs it out of the cells the docs build runs.")

def doc_filter():
    """nbdev's `FilterDefaults` (the processors nbdev applies before Quarto renders a notebook), with one change.
    nbdev runs every cell that contains an import; a cell that mixes imports with other code (nbdev warns
    about these) then runs in full, and fails when it needs names from cells the docs build does not run.
    Here such a cell runs only its top-level import statements, and its committed outputs are kept."""
    import ast
    from fastcore.basics import str2bool
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval, _show_docs
    class exec_show_docs_imports(exec_show_docs):
        "nbdev's `exec_show_docs`, running only the import statements of cells that mix imports with other code."
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            if str2bool(getattr(self.nb, 'frontmatter_', {}).get('skip_showdoc', False)): return
            if not _do_eval(cell): return
            trees = cell.parsed_()
            run_all = (cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'} or _show_docs(trees)
                       or all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees))
            if run_all: self.k.cell(cell)
            else:
                imports = [ast.unparse(t) for t in trees if isinstance(t, (ast.Import, ast.ImportFrom))]
                if imports: self.k.run('\n'.join(imports))
            if (e := self.k.exc):
                title = getattr(self.nb, 'frontmatter_', {}).get('title', '')
                what = cell.source if run_all else '\n'.join(imports)
                raise Exception(f"Error{' in notebook: '+title if title else ''} in cell {cell.idx_} "
                                f"({'the whole cell' if run_all else 'its import statements'}):\n{what}\n"
                                f"{type(e).__name__}: {e}") from e
    class Filter(FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_imports if p is exec_show_docs else p for p in super().base_procs()]
    return Filter()

def process_notebook(src:Path) -> dict:
    "Apply nbdev's doc processors (`doc_filter`) to notebook `src`; return the processed notebook as a dict."
    from fastcore.nbio import read_nb, nb2str
    os.environ['IN_TEST'] = '1'  # what nbdev's own driver sets while processing
    nb = read_nb(src)
    cwd = os.getcwd()
    os.chdir(src.parent)  # as when the notebook runs: relative paths resolve from nbs/
    try: doc_filter()(nb)
    except Exception as e:
        raise RuntimeError(f"{src.relative_to(ROOT) if src.is_relative_to(ROOT) else src}: nbdev's doc processing "
                           f"failed.\n{e}\n\n{_EXEC_HINT}") from None
    finally: os.chdir(cwd)
    return json.loads(nb2str(nb))  # plain dicts and lists, as nbdev would write it

def _process_one(src:str):
    "Worker entry point (separate process): never raises, returns (nb, None) or (None, message)."
    import warnings; warnings.filterwarnings('ignore')
    os.environ.setdefault('MPLBACKEND', 'Agg')
    try: return process_notebook(Path(src)), None
    except Exception as e: return None, str(e)

def process_all(paths:list[Path], jobs:int=2) -> list[dict]:
    "Process `paths` with nbdev, `jobs` at a time (separate processes, as nbdev does); stop on the first error."
    if jobs <= 1 or len(paths) <= 1: results = [_process_one(str(p)) for p in paths]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        sys.path.insert(0, str(Path(__file__).parent))
        import build_docs  # workers need the function from an importable module, not from __main__
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context('spawn')) as ex:
            results = list(ex.map(build_docs._process_one, [str(p) for p in paths]))
    errors = [msg for nb, msg in results if msg]
    if errors: raise SystemExit('\n\n'.join(errors))
    return [nb for nb, _ in results]

# ---------------------------------------------------------------------------------------------------------
# 2. Clean up and convert to markdown

def _src(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')

_re_fm = re.compile(r'^---\s*\n(.*?)\n---\s*$', re.S)
def split_front_matter(nb:dict) -> dict:
    "Remove the Quarto front matter (a raw `---` YAML cell) and nbdev's 'autogenerated' comment from `nb`; return the front matter."
    import yaml
    fm, cells = {}, []
    for c in nb['cells']:
        s = _src(c.get('source')).strip()
        if c['cell_type'] == 'raw' and not fm and (m := _re_fm.match(s)): fm = yaml.safe_load(m.group(1)) or {}; continue
        if c['cell_type'] == 'markdown' and s.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED!'): continue
        cells.append(c)
    nb['cells'] = cells
    return fm

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
def split_directives(source:str) -> tuple[dict, str]:
    "Leading `#| name: value` lines of a code cell as a dict, and the code without them."
    lines, dirs = source.splitlines(), {}
    while lines and (m := _re_directive.match(lines[0])):
        dirs[m.group(1)] = m.group(2); lines.pop(0)
    return dirs, '\n'.join(lines).strip('\n')

_re_ansi = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
def strip_ansi(s:str) -> str: return _re_ansi.sub('', s)

def fence(text:str, lang:str='', cls:str='') -> str:
    "A fenced code block that survives backticks inside `text`; `cls` adds a CSS class (pymdownx.superfences syntax)."
    n = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', text)])
    info = f' {{.{lang or "text"} .{cls}}}' if cls else lang
    return f"{'`'*n}{info}\n{text.rstrip()}\n{'`'*n}"

# show_doc writes pandoc link attributes for Quarto: `[source](url){target="_blank" style="..."}`
_re_pandoc_link = re.compile(r'\[([^\]]*)\]\(([^)\s]+)\)\{[^}\n]*\}')
def clean_quarto_markdown(md:str) -> str:
    "Turn the Quarto-only markup nbdev's `show_doc` emits into plain HTML that any markdown renderer keeps."
    return _re_pandoc_link.sub(lambda m: f'<a href="{html.escape(m.group(2))}" class="pb-source" target="_blank" '
                                          f'rel="noopener">{m.group(1)}</a>', md)

_re_md_link = re.compile(r'(!?)\[([^\]]*)\]\(([^)\s]+)\)')

class Page:
    "One notebook as markdown: `text`, the `files` it needs (relative path -> bytes) and its `api` entries."
    def __init__(self, text, files, api): self.text, self.files, self.api = text, files, api

def notebook_markdown(nb:dict, stem:str, link:callable, files_dir:str, src_dir:Path=NBS, out_cls:str='') -> Page:
    """Markdown for a processed notebook.
    `link(target)` maps a relative link from a markdown cell (e.g. `01_synth.ipynb#x`) to its new target or None
    (None: keep the text, drop the link). Output images are written as `{files_dir}/{stem}_{cell}_{n}.png`;
    `out_cls` marks text outputs (code blocks) with a CSS class, for the site."""
    out, files, api = [], {}, []
    def fix_links(md:str) -> str:
        def sub(m):
            bang, text, target = m.groups()
            if re.match(r'^(#|/)', target): return m.group(0)
            if re.match(r'^[a-z]+:', target):
                new = link(target) if not bang else target
                return m.group(0) if new == target else (f'[{text}]({new})' if new else text)
            if bang:  # an image file next to the notebooks: ship it with the page
                p = (src_dir/target.split('#')[0]).resolve()
                if not p.is_file(): raise SystemExit(f"{stem}: image {target!r} not found (looked in {src_dir})")
                rel = f"{files_dir}/{stem}_{p.name}"
                files[rel] = p.read_bytes()
                return f'![{text}]({rel})'
            new = link(target)
            return f'[{text}]({new})' if new else text
        return _re_md_link.sub(sub, md)

    for i, c in enumerate(nb['cells']):
        src = _src(c.get('source'))
        if c['cell_type'] == 'markdown':
            md = src
            for name, att in (c.get('attachments') or {}).items():
                mime, data = next(iter(att.items()))
                rel = f"{files_dir}/{stem}_{i}_{name}"
                files[rel] = base64.b64decode(_src(data))
                md = md.replace(f'attachment:{name}', rel)
            out.append(fix_links(md)); continue
        if c['cell_type'] != 'code': continue
        dirs, code = split_directives(src)
        if dirs.get('include') == 'false': continue
        asis = dirs.get('output') == 'asis'
        if code and dirs.get('echo') != 'false': out.append(fence(code, 'python'))
        if dirs.get('output') == 'false': continue
        for n, o in enumerate(c.get('outputs', [])):
            r = render_output(o, f"{files_dir}/{stem}_{i}_{n}", files, asis=asis, caption=dirs.get('fig-cap', ''),
                              cls=out_cls, fix=lambda md: fix_links(clean_quarto_markdown(md)))
            if r is None: continue
            if asis and code.startswith('show_doc'): api += show_doc_entries(r)
            out.append(r)
    return Page('\n\n'.join(s.strip('\n') for s in out if s.strip()) + '\n', files, api)

def render_output(o:dict, base:str, files:dict, asis=False, caption='', cls='', fix=lambda md: md) -> str|None:
    "Markdown for one cell output; images are added to `files` under `base` + extension; `fix` edits markdown output."
    t = o['output_type']
    if t == 'stream':
        if o.get('name') == 'stderr': return None  # warnings and progress bars are not for readers
        return fence(strip_ansi(_src(o['text'])), 'text', cls)
    if t == 'error': return fence(strip_ansi('\n'.join(o.get('traceback', []))), 'text', cls)
    data = o.get('data', {})
    for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg'), ('image/gif', 'gif')):
        if mime in data:
            files[f'{base}.{ext}'] = base64.b64decode(_src(data[mime]))
            alt = caption or 'figure'
            return f'![{alt}]({base}.{ext})' + (f'\n\n*{caption}*' if caption else '')
    if 'image/svg+xml' in data:
        files[f'{base}.svg'] = _src(data['image/svg+xml']).encode()
        return f'![{caption or "figure"}]({base}.svg)'
    if 'text/markdown' in data: return fix(_src(data['text/markdown']))
    if 'text/html' in data:
        h = _src(data['text/html']).strip()
        return f'<div class="pb-output" markdown="0">\n{h}\n</div>'
    if 'text/latex' in data and asis: return _src(data['text/latex'])
    if 'text/plain' in data: return fence(strip_ansi(_src(data['text/plain'])), 'text', cls)
    return None

_re_heading = re.compile(r'^(#{2,4})\s+(.+?)\s*$', re.M)
def show_doc_entries(md:str) -> list[tuple[str, str]]:
    "(name, first docstring line) for each `show_doc` heading in `md`."
    res = []
    for m in _re_heading.finditer(md):
        rest = md[m.end():]
        doc = re.search(r'^\*(?!\*)(.+?)\*\s*$', rest.split('\n#', 1)[0], re.M)
        res.append((m.group(2), doc.group(1) if doc else ''))
    return res

def slug(text:str) -> str:
    "Heading anchors as nbdev/Quarto make them (`PixelBertConfig.from_preset` -> `pixelbertconfig.from_preset`)."
    text = re.sub(r'<[^>]+>', '', html.unescape(text)).strip().lower()
    text = re.sub(r'[^\w\s.\-]', '', text)
    return re.sub(r'\s+', '-', text)

# ---------------------------------------------------------------------------------------------------------
# 3. The site

def _pyproject() -> dict:
    import tomllib
    return tomllib.loads((ROOT/'pyproject.toml').read_text())

def repo_file_url(rel:str) -> str:
    "The repository's web address of file `rel` (from pyproject.toml: project.urls.Repository, tool.nbdev.branch)."
    cfg = _pyproject()
    repo = cfg['project']['urls']['Repository'].rstrip('/')
    return f"{repo}/blob/{cfg['tool']['nbdev'].get('branch', 'main')}/{rel}"

def site_url() -> str:
    "Where the published site lives (project.urls.Documentation): nbdev writes its symbol links against it."
    return _pyproject()['project']['urls'].get('Documentation', '').rstrip('/') + '/'

def page_name(nb_path:Path, fm:dict) -> str:
    "The page's file name without extension: `index`, or the module name nbdev uses (`output-file`)."
    if nb_path.stem == 'index': return 'index'
    of = fm.get('output-file')
    return Path(of).stem if of else nb_path.stem

def build(out:Path, jobs:int=2, keep:Path|None=None, quiet=False) -> Path:
    "Render every notebook into the static site `out` (replaced as a whole)."
    import yaml
    t0 = time.time()
    paths = chapter_notebooks()
    nbs = process_all(paths, jobs)
    t1 = time.time()
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix='pixelbert-docs-'))
    if tmp.exists(): shutil.rmtree(tmp)
    md_dir = tmp/'md'; md_dir.mkdir(parents=True)
    fms = [split_front_matter(nb) for nb in nbs]
    names = {p.name: page_name(p, fm) for p, fm in zip(paths, fms)}
    published = site_url()
    def link(target):
        if published != '/' and target.startswith(published):  # nbdev's link to a symbol: stay on this site
            target = re.sub(r'\.html(?=#|$)', '.md', target[len(published):])
            return target if target.split('#')[0] in {f'{n}.md' for n in names.values()} else None
        f, _, anchor = target.partition('#')
        if f in names: return f'{names[f]}.md' + (f'#{anchor}' if anchor else '')
        if f.endswith('.ipynb'): return None  # a chapter that is not written yet: text without a link
        if f.startswith('../'): return repo_file_url(target[3:])  # a file of the repository, outside the site
        return target
    nav, api, texts = [], [], {}
    for p, nb, fm in zip(paths, nbs, fms):
        name = names[p.name]
        page = notebook_markdown(nb, name, link, files_dir=f'{name}_files', out_cls='pb-out')
        title = fm.get('title') or p.stem
        head = f"---\ntitle: {json.dumps(title)}\n---\n\n# {title}\n"
        if fm.get('description'): head += f"\n{fm['description']}\n{{: .pb-lead }}\n"
        texts[name] = head + '\n' + page.text
        for rel, data in page.files.items():
            (md_dir/rel).parent.mkdir(parents=True, exist_ok=True); (md_dir/rel).write_bytes(data)
        label = title if name == 'index' else f"{p.stem.split('_')[0]} · {title}"
        nav.append({('Home' if name == 'index' else label): f'{name}.md'})
        if page.api: api.append((label, name, page.api))
    texts['api'] = api_page(api)
    for name, text in drop_dead_anchors(texts).items(): (md_dir/f'{name}.md').write_text(text)
    nav.append({'API index': 'api.md'})
    shutil.copytree(SITE_SRC/'assets', md_dir/'assets')
    cfg = yaml.safe_load((SITE_SRC/'mkdocs.yml').read_text())
    cfg.update(docs_dir=str(md_dir), site_dir=str(Path(out).resolve()), nav=nav,
               hooks=[str(SITE_SRC/'hooks.py')])
    (tmp/'mkdocs.yml').write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    env = dict(os.environ, SOURCE_DATE_EPOCH='0')  # no build dates in the pages
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--clean', '-q', '-f', str(tmp/'mkdocs.yml')],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"mkdocs build failed (pages kept in {tmp}):\n{r.stdout}{r.stderr}")
    for f in ('sitemap.xml', 'sitemap.xml.gz'): (Path(out)/f).unlink(missing_ok=True)  # dated, and no site_url
    (Path(out)/'.nojekyll').write_text('')  # GitHub Pages: serve files as they are
    if not keep: shutil.rmtree(tmp)
    if not quiet:
        print(f"docs: {len(paths)} notebooks -> {out} (nbdev processing {t1-t0:.1f} s, "
              f"markdown + mkdocs {time.time()-t1:.1f} s)")
    return Path(out)

_re_page_anchor = re.compile(r'\[([^\]]*)\]\(([\w.-]+)\.md#([^)\s]+)\)')
def drop_dead_anchors(texts:dict) -> dict:
    """Unlink `[x](page.md#anchor)` where the page has no such heading: nbdev links every name it knows,
    private helpers included, but only documented names get a section."""
    anchors = {n: {slug(h) for h in re.findall(r'^#{1,6}\s+(.+?)\s*$', t, re.M)} for n, t in texts.items()}
    def sub(m):
        text, page, anchor = m.groups()
        return m.group(0) if page not in anchors or anchor in anchors[page] else text
    return {n: _re_page_anchor.sub(sub, t) for n, t in texts.items()}

def api_page(api:list) -> str:
    "The API index: every `show_doc` entry of every chapter, linked to its section."
    lines = ['---\ntitle: API index\n---\n', '# API index\n',
             'Every documented function, class and method, by chapter. Each chapter page shows the signature, '
             'the arguments and a link to the source.\n']
    for label, name, entries in api:
        lines.append(f'## [{label}]({name}.md)\n')
        lines += [f'- [`{n}`]({name}.md#{slug(n)})' + (f' — {d}' if d else '') for n, d in entries]
        lines.append('')
    if not api: lines.append('No chapter documents an API yet.')
    return '\n'.join(lines) + '\n'

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'docs'), help='site folder (replaced as a whole); default docs/')
    ap.add_argument('--jobs', type=int, default=2, help='notebooks processed at a time (separate processes)')
    ap.add_argument('--keep', default=None, help='keep the intermediate markdown and mkdocs.yml in this folder')
    a = ap.parse_args(argv)
    build(Path(a.out), jobs=a.jobs, keep=Path(a.keep) if a.keep else None)

if __name__ == '__main__': main()
