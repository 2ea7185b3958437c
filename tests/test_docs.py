"""The documentation site, as a reader's browser sees it.

The site is built with `tools/build_docs.py` (what `make docs` runs) into a temporary folder, never into the
committed docs/, served on 127.0.0.1 by `http.server`, and loaded in headless Chromium: Debian's `chromium`
package, driven by playwright's Python package with `executable_path` (playwright never downloads a browser
here). `tools/test.sh` runs `tools/install_chromium.sh` first; without /usr/bin/chromium these tests fail
rather than skip.
"""
import functools, http.server, json, os, re, subprocess, sys, tempfile, threading, time
from html.parser import HTMLParser
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from build_docs import chapter_notebooks

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']

# ---------------------------------------------------------------------------------------------------------
# fixtures: the built site, a local server, a browser

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    t = time.time()
    r = subprocess.run([sys.executable, 'tools/build_docs.py', '--out', str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"tools/build_docs.py failed:\n{r.stdout}\n{r.stderr}"
    print(f"site built in {time.time()-t:.1f} s: {r.stdout.strip()}")
    return out

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def url(site):
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown(); srv.server_close()

@pytest.fixture(scope='module')
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash tools/install_chromium.sh` (the test command, tools/test.sh, "
                    "runs it before pytest) to install Debian's chromium package")
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                   viewport={'width': 1280, 'height': 900})
        yield ctx
        ctx.close()

def load(ctx, url:str):
    "Open `url`; return the page and every problem a reader would meet (console errors, failed loads)."
    page, problems = ctx.new_page(), []
    page.on('console', lambda m: m.type == 'error' and problems.append(f'console error: {m.text}'))
    page.on('pageerror', lambda e: problems.append(f'uncaught exception: {e}'))
    page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url} ({r.failure})'))
    page.on('response', lambda r: r.status >= 400 and problems.append(f'HTTP {r.status}: {r.url}'))
    page.goto(url, wait_until='networkidle')
    return page, problems

def images(page) -> list:
    "[(src, loaded width)] of the article's images."
    return page.evaluate("""Array.from(document.querySelectorAll('article img')).map(i => [i.getAttribute('src'),
                            i.complete ? i.naturalWidth : 0])""")

class _NavLinks(HTMLParser):
    "(href, text) of the site navigation's page links (`a.md-nav__link` to an .html page), in document order."
    def __init__(self):
        super().__init__(); self.links, self._a = [], None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'a' and 'md-nav__link' in (a.get('class') or '') and re.match(r'^[\w.-]+\.html$', a.get('href', '')):
            self._a = [a['href'], '']
    def handle_data(self, data):
        if self._a is not None: self._a[1] += data
    def handle_endtag(self, tag):
        if tag == 'a' and self._a is not None: self.links.append((self._a[0], ' '.join(self._a[1].split()))); self._a = None

def nav(site:Path) -> list[tuple[str, str]]:
    "(page, title) of each page in the navigation, in order (read from the built front page)."
    p = _NavLinks(); p.feed((site/'index.html').read_text())
    return list(dict.fromkeys(p.links))

def nav_pages(site:Path) -> list[str]: return [h for h, _ in nav(site)]

# ---------------------------------------------------------------------------------------------------------
# static checks of the build

def test_committed_site_is_up_to_date(site):
    "docs/ (committed) is byte for byte what `make docs` builds from the notebooks as they are now."
    def files(root): return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()}
    built, committed = files(site), files(ROOT/'docs')
    stale = sorted(k for k in built.keys() | committed.keys() if built.get(k) != committed.get(k))
    assert not stale, (f"docs/ is stale: {len(stale)} files differ from a fresh build (e.g. {stale[:5]}); "
                       "run `make docs` and commit docs/")

def test_one_page_per_notebook_in_reading_order(site):
    nbs = chapter_notebooks()
    pages = nav_pages(site)
    assert pages[0] == 'index.html' and pages[-1] == 'api.html', pages
    chapters = pages[1:-1]
    assert len(chapters) == len(nbs) - 1, (chapters, [p.name for p in nbs])
    titles = [t for _, t in nav(site)]
    numbers = [t.split(' ')[0] for t in titles if re.match(r'\d\w* · ', t)]  # '00 · ...', '02a · ...'
    assert numbers == sorted(numbers) == [p.name.split('_')[0] for p in nbs[1:]], (numbers, titles)
    for p in pages: assert (site/p).is_file(), p
    assert (site/'.nojekyll').exists()
    assert not (site/'sitemap.xml').exists(), 'the sitemap carries build dates'

def test_search_index_covers_every_page(site):
    idx = json.loads((site/'search'/'search_index.json').read_text())
    locations = {d['location'].split('#')[0] for d in idx['docs']}
    assert set(nav_pages(site)) <= locations, set(nav_pages(site)) - locations

def test_api_index_links_resolve(site):
    "Every entry of the API index points at a section that exists on its chapter's page."
    class Ids(HTMLParser):
        def __init__(self): super().__init__(); self.ids = set()
        def handle_starttag(self, tag, attrs): self.ids |= {v for k, v in attrs if k == 'id'}
    api = (site/'api.html').read_text()
    article = api[api.index('<article'):api.index('</article>')]
    links = re.findall(r'<li><a href="([\w.-]+\.html)#([^"]+)">', article)  # each entry's own link (not links in docstrings)
    assert links or 'No chapter documents an API yet' in article
    ids = {}
    for page, anchor in links:
        if page not in ids: p = Ids(); p.feed((site/page).read_text()); ids[page] = p.ids
        assert anchor in ids[page], f'api.html links to {page}#{anchor}, which does not exist'

# ---------------------------------------------------------------------------------------------------------
# in the browser

def test_front_page_renders(url, browser):
    page, problems = load(browser, f'{url}/index.html')
    assert 'pixelbert' in page.title()
    assert page.locator('article h1').first.inner_text().replace('¶', '').strip() == 'pixelbert'
    assert page.locator('article h2', has_text='Two commands').count() == 1
    assert page.locator('article table').count() >= 2  # commands, chapters, the paper's results
    imgs = images(page)
    assert imgs, 'the front page shows no figure'
    assert all(w > 0 for _, w in imgs), f'figures that did not load: {imgs}'
    assert page.locator('nav.md-nav--primary a').count() >= 3
    assert not problems, problems
    page.close()

def _api_page(site:Path) -> str:
    "The first chapter page with a `show_doc` entry and a figure; else the first with a `show_doc` entry."
    chapters = [p for p in nav_pages(site)[1:-1] if 'pb-source' in (site/p).read_text()]
    assert chapters, 'no chapter page has show_doc output'
    return next((p for p in chapters if '<img' in (site/p).read_text()), chapters[0])

def test_api_page_renders(site, url, browser):
    name = _api_page(site)
    page, problems = load(browser, f'{url}/{name}')
    assert page.locator('article h1').count() == 1 and page.locator('article h1').inner_text().strip()
    # show_doc: a heading per documented symbol, its signature as code, a link to the source
    src = page.locator('article a.pb-source')
    assert src.count() >= 1
    assert re.match(r'https://github\.com/.+/blob/.+\.py#L\d+$', src.first.get_attribute('href'))
    assert page.locator('article h3, article h4').count() >= 1
    assert page.locator('article pre code').count() >= 1
    imgs = images(page)
    if '<img' in (site/name).read_text(): assert imgs and all(w > 0 for _, w in imgs), f'figures not loaded: {imgs}'
    maths = page.evaluate("Array.from(document.querySelectorAll('article math')).map(m => m.getBoundingClientRect().height)")
    assert all(h > 0 for h in maths), 'a formula rendered with no height'
    assert not page.locator('article code.pb-latex').count(), 'a formula was not converted to MathML'
    assert not problems, problems
    page.close()

def test_search_finds_a_chapter(url, browser):
    page, problems = load(browser, f'{url}/index.html')
    page.locator('input.md-search__input').click()
    page.keyboard.type('preset')  # typed key by key: the search reacts to key events
    page.wait_for_selector('.md-search-result__item', timeout=15000)
    assert page.locator('.md-search-result__item').count() >= 1
    assert not problems, problems
    page.close()
