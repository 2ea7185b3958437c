"""Author notebooks as text: convert between percent-format scripts and .ipynb.

    python tools/nb.py py2nb SRC.py NB.ipynb      # build a notebook (no outputs) from a percent script
    python tools/nb.py nb2py NB.ipynb SRC.py      # dump a notebook's cells as a percent script
    python tools/nb.py run NB.ipynb [--timeout S] # execute in place (outputs kept, as nbdev's docs want), then nbdev-clean

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

def run(nb_path, timeout=600):
    from nbclient import NotebookClient
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name='python3',
                   resources={'metadata': {'path': str(Path(nb_path).parent)}}).execute()
    nbformat.write(nb, nb_path)
    subprocess.run([str(Path(sys.executable).parent/'nbdev-clean'), '--fname', str(nb_path)], check=True)

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'py2nb': py2nb(*args)
    elif cmd == 'nb2py': nb2py(*args)
    elif cmd == 'run':
        t = int(args[args.index('--timeout')+1]) if '--timeout' in args else 600
        run(args[0], t)
    else: sys.exit(__doc__)
