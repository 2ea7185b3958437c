"""Author notebooks as text: convert between percent-format scripts and .ipynb.

    python tools/nb.py py2nb SRC.py NB.ipynb      # build a notebook (no outputs) from a percent script
    python tools/nb.py nb2py NB.ipynb SRC.py      # dump a notebook's cells as a percent script
    python tools/nb.py run NB.ipynb [--timeout S] [--with-cuda] # execute in place (outputs kept, as nbdev's docs want), then nbdev-clean

`run` leaves `#| cuda` cells alone unless --with-cuda is given: they keep the outputs committed from a GPU run.

Percent format: a line `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose lines are
prefixed with `# `. nbdev directives (`#| export`) stay inside code cells as usual.
"""
import sys, json, subprocess
from pathlib import Path
import nbformat

def py2nb(src, dst):
    text = Path(src).read_text()
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        body = '\n'.join(buf).strip('\n')
        if kind == 'md':
            body = '\n'.join(l[2:] if l.startswith('# ') else l.lstrip('#') for l in body.split('\n'))
            cells.append(nbformat.v4.new_markdown_cell(body))
        else: cells.append(nbformat.v4.new_code_cell(body))
    for line in text.split('\n'):
        if line.startswith('# %%'):
            flush(); buf = []
            kind = 'md' if '[markdown]' in line else 'code'
        else: buf.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    nbformat.write(nb, dst)

def nb2py(src, dst):
    nb = nbformat.read(src, as_version=4)
    out = []
    for c in nb.cells:
        if c.cell_type == 'markdown':
            out.append('# %% [markdown]')
            out += ['# ' + l if l else '#' for l in c.source.split('\n')]
        else:
            out.append('# %%'); out.append(c.source)
        out.append('')
    Path(dst).write_text('\n'.join(out))

def _flags(source):
    "nbdev directives of a cell, e.g. {'cuda', 'export'}."
    return {l.strip()[3:].strip().split()[0] for l in source.splitlines() if l.strip().startswith('#|') and l.strip()[3:].strip()}

def run(nb_path, timeout=600, with_cuda=False):
    from nbclient import NotebookClient
    nb = nbformat.read(nb_path, as_version=4)
    kept = {}
    if not with_cuda:  # a GPU cell's outputs come from a real GPU run: keep them, do not run the cell here
        for i, c in enumerate(nb.cells):
            if c.cell_type == 'code' and 'cuda' in _flags(c.source):
                kept[i] = (c.source, c.outputs, c.get('execution_count'))
                c.source, c.outputs = 'pass  # a #| cuda cell: not run here (tools/nb.py run --with-cuda runs it)', []
    NotebookClient(nb, timeout=timeout, kernel_name='python3',
                   resources={'metadata': {'path': str(Path(nb_path).parent)}}).execute()
    for i, (src, outs, n) in kept.items():
        nb.cells[i].source, nb.cells[i].outputs, nb.cells[i].execution_count = src, outs, n
    nbformat.write(nb, nb_path)
    subprocess.run([str(Path(sys.executable).parent/'nbdev-clean'), '--fname', str(nb_path)], check=True)

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'py2nb': py2nb(*args)
    elif cmd == 'nb2py': nb2py(*args)
    elif cmd == 'run':
        t = int(args[args.index('--timeout')+1]) if '--timeout' in args else 600
        run(args[0], t, with_cuda='--with-cuda' in args)
    else: sys.exit(__doc__)
