"""mkdocs hooks for the pixelbert site (loaded by the mkdocs.yml that tools/build_docs.py writes).

- Heading anchors as nbdev makes them, so `show_doc` sections keep nbdev's links (`config.html#pixelbertconfig`).
- LaTeX to MathML at build time: pymdownx.arithmatex marks the formulas (`$...$`, `$$...$$`) and this hook
  replaces each with MathML from latex2mathml, which browsers render themselves: no MathJax, nothing fetched.
  A formula latex2mathml cannot convert fails the (strict) build, naming the page and the formula.
"""
import html, logging, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
from build_docs import slug  # the API index page links with the same function

log = logging.getLogger('mkdocs.hooks.pixelbert')

def on_config(config, **kw):
    config.mdx_configs.setdefault('toc', {})['slugify'] = lambda value, separator='-': slug(value)
    return config

_re_inline = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_re_block = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)

def to_mathml(tex:str, display:str) -> str:
    from latex2mathml.converter import convert
    tex = tex.replace(r'\begin{aligned}', r'\begin{align*}').replace(r'\end{aligned}', r'\end{align*}')
    return convert(tex, display=display).replace('<mi>&</mi>', '')

def on_page_content(content, page, **kw):
    def sub(display):
        def f(m):
            tex = html.unescape(m.group(1)).strip()
            try: return to_mathml(tex, display)
            except Exception as e:
                log.warning(f"{page.file.src_path}: cannot convert formula {tex!r} to MathML ({type(e).__name__}: {e})")
                return f'<code class="pb-latex">{html.escape(tex)}</code>'
        return f
    content = _re_block.sub(sub('block'), content)
    return _re_inline.sub(sub('inline'), content)
