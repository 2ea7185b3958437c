"""Attention maps and the pointing game (chapter 14): rollout against a brute-force sum over paths, padding on the
grid, word merging, `pixelbert-viz` end to end (and its errors), loading task checkpoints, and the pointing game
with an oracle attention (1.0) and a uniform one (exactly the chance rate)."""
import itertools, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from pixelbert.attention import (attention_rollout, layer_attention, to_grid, token_to_pixel_attention, word_tokens,
                                 word_panels, upsample_to_image, overlay, named_word, object_cells, pointing_hits,
                                 pointing_game, grounding_samples, pointing_table, load_model_and_processor, viz_cli,
                                 word_attention_maps, plot_word_grid)
from pixelbert.model import PixelBertModel, PixelBertModelOutput
from pixelbert.processing import PixelBertProcessor
from pixelbert.pretraining import PixelBertForPreTraining, pretraining_config
from pixelbert.synth import make_scene
from fastcore.script import CliError


@pytest.fixture(scope='module')
def processor(): return PixelBertProcessor.from_preset('tiny')


@pytest.fixture(scope='module')
def model(processor):
    torch.manual_seed(0)
    return PixelBertForPreTraining(pretraining_config('tiny', processor.tokenizer)).pixelbert.eval()


@pytest.fixture(scope='module')
def samples(): return grounding_samples('val', n_images=12)


# --- rollout ---------------------------------------------------------------------------------------------------------

def brute_rollout(atts, b, residual=True):
    "Share of input token k in token i: the sum over every path i -> j_L-1 -> ... -> k of the product of the steps."
    n = atts[0].shape[-1]
    steps = []
    for a in atts:
        m = a[b].mean(0)
        if residual:
            m = m + torch.eye(n)
            m = m / m.sum(-1, keepdim=True)
        steps.append(m)
    L, out = len(steps), torch.zeros(n, n)
    for i, k in itertools.product(range(n), range(n)):
        for mids in itertools.product(range(n), repeat=L - 1):
            path = (i,) + mids + (k,)  # token at the top, then down through the layers to the input
            p = 1.0
            for step, (q, r) in zip(reversed(steps), zip(path, path[1:])): p = p * step[q, r]
            out[i, k] += p
    return out


def test_rollout_equals_brute_force():
    # hand-made: 3 layers, 2 heads, 4 tokens; rows are distributions, some entries zero (a masked key)
    a1 = torch.tensor([[[.5, .5, 0, 0], [.25, .25, .5, 0], [0, 0, 1, 0], [.1, .2, .3, .4]],
                       [[1, 0, 0, 0], [0, .5, .5, 0], [.3, .3, .4, 0], [.25, .25, .25, .25]]])
    a2 = torch.tensor([[[0, 1, 0, 0], [.5, 0, .5, 0], [.2, .2, .6, 0], [0, 0, 0, 1]],
                       [[.4, .6, 0, 0], [.1, .1, .8, 0], [1, 0, 0, 0], [.5, 0, .5, 0]]])
    g = torch.Generator().manual_seed(1)
    a3 = torch.rand(2, 4, 4, generator=g).softmax(-1)
    atts = [torch.stack([a, a.flip(0)]) for a in (a1, a2, a3)]  # batch of 2: second item swaps the heads
    for residual in (True, False):
        R = attention_rollout(atts, residual=residual)
        for b in range(2): torch.testing.assert_close(R[b], brute_rollout(atts, b, residual), atol=1e-6, rtol=1e-5)
    # a single head rolled out = the rollout of a one-head model
    torch.testing.assert_close(attention_rollout(atts, head=1), attention_rollout([a[:, 1:2] for a in atts]))
    # head-mean rollout of one layer without residual is that layer's mean attention
    torch.testing.assert_close(layer_attention(atts, 'rollout')[0], brute_rollout(atts, 0))
    torch.testing.assert_close(layer_attention(atts, 1), atts[1].mean(1))
    with pytest.raises(ValueError, match='rollout'): layer_attention(atts, 'top')
    with pytest.raises(ValueError, match='0..2'): layer_attention(atts, 3)
    with pytest.raises(ValueError, match='output_attentions'): attention_rollout([])


# --- grid and padding ------------------------------------------------------------------------------------------------

def test_to_grid_mask_and_sampled_pixels():
    v = torch.arange(1., 7.).reshape(1, 6)  # 6 pixel tokens of a 2x3 grid
    mask = torch.tensor([[1, 1, 0, 1, 1, 0]])  # the last column is padding
    torch.testing.assert_close(to_grid(v, (2, 3), mask), torch.tensor([[[1., 2., 0.], [4., 5., 0.]]]))
    # sampled pixels: tokens at grid positions 4 and 0, the rest of the grid zero
    torch.testing.assert_close(to_grid(torch.tensor([[7., 9.]]), (2, 3), torch.ones(1, 2), torch.tensor([[4, 0]])),
                               torch.tensor([[[9., 0., 0.], [0., 7., 0.]]]))
    with pytest.raises(ValueError, match='grid'): to_grid(v, (2, 2))


def test_padded_image_gives_zero_on_padded_cells(model, processor):
    im = make_scene(0, 'train', 3).render(128)
    low = im.crop((0, 0, 128, 80))  # 5x8 cells alone; padded to 8x8 next to a square image
    with torch.no_grad():
        alone = model(**processor(images=[low], text=['a red circle']), output_attentions=True)
        both = model(**processor(images=[low, im], text=['a red circle', 'a red circle']), output_attentions=True)
    assert alone.pixel_grid == (5, 8) and both.pixel_grid == (8, 8)
    for layer in (0, 3, 'rollout'):
        for head in (None, 1):
            kw = lambda o: dict(text_length=o.text_length, pixel_grid=o.pixel_grid, pixel_mask=o.pixel_mask)
            m_both = token_to_pixel_attention(both.attentions, layer, [2, 3], head, **kw(both))
            m_alone = token_to_pixel_attention(alone.attentions, layer, [2, 3], head, **kw(alone))
            assert m_both[0, 5:].abs().sum() == 0  # padded rows: exactly zero
            assert (m_both[0, :5] > 0).all() and (m_both[1] > 0).all()
            torch.testing.assert_close(m_both[0, :5], m_alone[0], atol=1e-5, rtol=1e-4)
    # back on the image: the padding is cut off, the original size restored
    grid = token_to_pixel_attention(both.attentions, 'rollout', 3, text_length=both.text_length,
                                    pixel_grid=both.pixel_grid, pixel_mask=both.pixel_mask)
    pm = processor(images=[low, im])['pixel_mask'][0]
    heat = upsample_to_image(grid[0], pm, (80, 128))
    assert heat.shape == (80, 128) and (heat > 0).all()
    assert overlay(low, heat).size == low.size
    with pytest.raises(ValueError, match='differ in size'): overlay(im, heat)


# --- words -----------------------------------------------------------------------------------------------------------

def test_word_merging(processor):
    tok = processor.tokenizer
    text = 'what colour is the crosses?'
    words = word_tokens(text, tok)
    assert [w for w, _ in words] == ['what', 'colour', 'is', 'the', 'crosses', '?']
    assert len(words[1][1]) > 1  # 'colour' is cut into pieces by the synthetic vocabulary (it spells 'color')
    n = len(tok(text)['input_ids'])
    maps = torch.arange(float(n))[:, None, None].expand(n, 2, 2)  # token i's map is filled with i
    panels = word_panels(maps, text, tok)
    for (w, m), (_, ps) in zip(panels, words):
        torch.testing.assert_close(m, torch.full((2, 2), float(np.mean(ps))))
    with pytest.raises(ValueError, match='token maps'): word_panels(maps[:3], text, tok)


def test_named_word(processor):
    tok = processor.tokenizer
    assert named_word('is the red circle to the left of the blue square?', tok, 'circle')[0] == 'circle'
    assert named_word('is the red circle to the left of the blue square?', tok, 'square') is None  # first noun is not it
    assert named_word('what shape is the red object?', tok, 'cross') is None
    assert named_word('what shape is the red object?', tok, 'cross', nouns='any')[0] == 'object'
    w, ps = named_word('a picture with two crosses', tok, 'cross')
    assert w == 'crosses' and tok.convert_ids_to_tokens(tok('a picture with two crosses')['input_ids'])[ps[0]].startswith('cross')


# --- the figure and the command line ---------------------------------------------------------------------------------

def test_word_maps_and_figure(model, processor):
    im = make_scene(0, 'train', 3).render(128)
    maps = word_attention_maps(im, 'a small red circle', model, processor, layer=2, head=0)
    assert [w for w, _, _ in maps] == ['a', 'small', 'red', 'circle']
    assert all(h.shape == (128, 128) and g.shape == (8, 8) for _, h, g in maps)
    fig = plot_word_grid(im, 'a small red circle', model, processor, maps=maps)
    assert len([ax for ax in fig.axes if ax.images]) == 5  # the image and one panel per word
    with pytest.raises(ValueError, match='non-empty'): word_attention_maps(im, '  ', model, processor)


def run_viz(*args):
    "Run `pixelbert-viz` as a user does: the installed console script (or, if the package's scripts are not installed, the same entry point)."
    script = shutil.which('pixelbert-viz', path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, str(Path(tempfile.gettempdir()) / 'pixelbert_viz_entry.py')]
    if not script: Path(cmd[1]).write_text('import sys\nfrom pixelbert.attention import viz_cli\nif __name__ == "__main__": sys.exit(viz_cli())\n')
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1'})


def test_viz_cli_end_to_end(tmp_path, model, processor):
    model.save_pretrained(tmp_path / 'model'); processor.save_pretrained(tmp_path / 'model')
    make_scene(0, 'val', 5).render(128).save(tmp_path / 'scene.png')
    r = run_viz('--model', str(tmp_path / 'model'), '--image', str(tmp_path / 'scene.png'), '--text', 'a red circle above a cross',
                '--out', str(tmp_path / 'viz'), '--layer', '1', '--head', '2')
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / 'viz').iterdir())
    assert names == ['00_a.png', '01_red.png', '02_circle.png', '03_above.png', '04_a.png', '05_cross.png', 'words.png']
    for n in names: assert Image.open(tmp_path / 'viz' / n).size[0] > 0
    assert Image.open(tmp_path / 'viz' / '02_circle.png').size == (128, 128)
    # default: rollout, in process
    assert viz_cli(model=str(tmp_path / 'model'), image=str(tmp_path / 'scene.png'), text='a cross', out=str(tmp_path / 'v2')) == 0
    assert (tmp_path / 'v2' / 'words.png').is_file()


def test_viz_cli_bad_input(tmp_path, model, processor):
    model.save_pretrained(tmp_path / 'model'); processor.save_pretrained(tmp_path / 'model')
    Image.new('RGB', (128, 128)).save(tmp_path / 'im.png')
    (tmp_path / 'broken.png').write_bytes(b'not an image')
    (tmp_path / 'empty').mkdir()
    ok = dict(model=str(tmp_path / 'model'), image=str(tmp_path / 'im.png'), text='a circle', out=str(tmp_path / 'v'))
    cases = [(dict(image=str(tmp_path / 'missing.png')), 'missing.png'),
             (dict(model=str(tmp_path / 'nomodel')), 'nomodel does not exist'),
             (dict(model=str(tmp_path / 'empty')), 'config.json and model.safetensors missing'),
             (dict(image=str(tmp_path / 'broken.png')), 'broken.png'),
             (dict(layer='top'), "'rollout' or a layer index"),
             (dict(layer='7'), '0..3'),
             (dict(head=9), '4 heads'),
             (dict(processor=str(tmp_path / 'empty')), 'no processor')]
    for kw, msg in cases:  # in process: a Python call sees the CliError
        with pytest.raises(CliError) as e: viz_cli(**{**ok, **kw})
        assert msg in str(e.value), (kw, str(e.value))
    # as a command: a non-zero exit with the message
    r = run_viz('--model', str(tmp_path / 'model'), '--image', str(tmp_path / 'missing.png'), '--text', 'a', '--out', str(tmp_path / 'v'))
    assert r.returncode != 0 and 'missing.png does not exist' in r.stderr
    with pytest.raises(CliError, match='--model DIR is required'): viz_cli(image=str(tmp_path / 'im.png'), text='a', out=str(tmp_path / 'v'))


def test_load_task_checkpoint_and_run_folder(tmp_path, processor):
    "A pre-training checkpoint (heads included) loads as its PixelBertModel part; a run folder resolves to final/."
    torch.manual_seed(1)
    task = PixelBertForPreTraining(pretraining_config('tiny', processor.tokenizer))
    task.save_pretrained(tmp_path / 'run' / 'final'); processor.save_pretrained(tmp_path / 'run' / 'final')
    net, proc = load_model_and_processor(tmp_path / 'run')
    assert isinstance(net, PixelBertModel) and not net.training
    own = task.pixelbert.state_dict()
    for k, v in net.state_dict().items(): torch.testing.assert_close(v, own[k], msg=k)
    # processor in the parent folder (a model saved under run/model, processor under run/)
    task.pixelbert.save_pretrained(tmp_path / 'run2' / 'model'); processor.save_pretrained(tmp_path / 'run2')
    assert load_model_and_processor(tmp_path / 'run2' / 'model')[1].tokenizer.vocab_size == processor.tokenizer.vocab_size


# --- the pointing game -----------------------------------------------------------------------------------------------

def test_object_cells_and_hits():
    mask = np.zeros((128, 128), bool)
    mask[32:48, 48:64] = True  # fills cell (2,3)
    mask[32:34, 64:68] = True  # 8 pixels of cell (2,4): 3% of it
    on = object_cells(mask, torch.ones(128, 128), (8, 8), min_cover=0.1)
    assert on.nonzero().tolist() == [[2, 3]]
    assert object_cells(mask, torch.ones(128, 128), (8, 8), min_cover=0.02).nonzero().tolist() == [[2, 3], [2, 4]]
    tiny = np.zeros((128, 128), bool); tiny[0, 0] = True  # smaller than any min_cover: its fullest cell still counts
    assert object_cells(tiny, torch.ones(128, 128), (8, 8)).nonzero().tolist() == [[0, 0]]
    with pytest.raises(ValueError, match='empty'): object_cells(np.zeros((128, 128), bool), torch.ones(128, 128), (8, 8))
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    assert pointing_hits(torch.ones(1, 8, 8), on[None], valid).item() == pytest.approx(1 / 64)
    m = torch.zeros(1, 8, 8); m[0, 2, 3] = 1; m[0, 5, 5] = 1  # tie between an on and an off cell
    assert pointing_hits(m, on[None], valid).item() == pytest.approx(0.5)


class ScriptedAttention(PixelBertModel):
    "A real PixelBertModel whose attention is replaced: every token attends uniformly to `target` cells, or to all."
    oracle = {}  # (token ids, image checksum) -> flat grid index of the target's fullest cell
    mode = 'oracle'

    def forward(self, input_ids, attention_mask=None, pixel_values=None, pixel_mask=None, output_attentions=False, **kw):
        out = super().forward(input_ids, attention_mask, pixel_values=pixel_values, pixel_mask=pixel_mask, **kw)
        b, t = input_ids.shape
        p = out.pixel_mask.shape[1]
        real = torch.cat([attention_mask, out.pixel_mask], 1).float()  # (b,n)
        a = real[:, None, :].expand(b, t + p, t + p).clone()  # uniform over real tokens
        if self.mode == 'oracle':
            for j in range(b):
                cell = self.oracle[key(input_ids[j], attention_mask[j], pixel_values[j])]
                a[j] = 0; a[j, :, t + cell] = 1
        a = a / a.sum(-1, keepdim=True)
        att = a[:, None].expand(b, self.config.num_attention_heads, t + p, t + p)
        out.attentions = tuple(att for _ in range(self.config.num_hidden_layers))
        return out


def key(ids, att, pix): return tuple(ids[att.bool()].tolist()), round(float(pix.double().sum()), 2)


def test_pointing_game_oracle_and_uniform(processor, samples):
    torch.manual_seed(0)
    net = ScriptedAttention(pretraining_config('tiny', processor.tokenizer)).eval()
    for s in samples:  # the oracle, computed without the module: the 16x16 block holding most of the target
        text = s.caption if hasattr(s, 'caption') else s.question
        enc = processor(images=[s.image], text=[text])
        block = s.scene.object_mask(s.target, 128).reshape(8, 16, 8, 16).sum((1, 3))
        ScriptedAttention.oracle[key(enc['input_ids'][0], enc['attention_mask'][0], enc['pixel_values'][0])] = int(block.argmax())
    ScriptedAttention.mode = 'oracle'
    res = pointing_game(net, processor, samples, batch_size=7)
    assert res['samples'] > 10 and res['samples'] + res['skipped'] == len(samples)
    for k in ('layer_0', 'layer_3', 'rollout'): assert res[k] == res['any_object'][k] == res['among_objects'][k] == 1.0
    assert 0 < res['chance'] < 0.25 and res['chance'] < res['any_object']['chance']
    ScriptedAttention.mode = 'uniform'
    uni = pointing_game(net, processor, samples, batch_size=5)
    for k in ('layer_0', 'layer_2', 'rollout'):
        assert uni[k] == pytest.approx(uni['chance'], abs=1e-9)
        assert uni['any_object'][k] == pytest.approx(uni['any_object']['chance'], abs=1e-9)
    assert uni['chance'] == pytest.approx(res['chance'])
    table = pointing_table({'oracle': res, 'uniform': uni})
    assert '| layer 3 | 1.000 | 1.000 | 1.000 | 1.00 |' in table and 'random object' in table
    for k in ('layer_0', 'layer_3'):  # every row of the oracle puts all its weight on pixels; uniform rows spread it
        assert res['pixel_share'][k] == pytest.approx(1.0) and 0.5 < uni['pixel_share'][k] < 1.0


def test_pointing_game_real_model(model, processor, samples):
    "On a real (untrained) model: rates in [0, 1], one per layer plus rollout; bad input refused."
    res = pointing_game(model, processor, samples, layers=[0, 3])
    assert set(res) == {'samples', 'skipped', 'chance', 'object_chance', 'layer_0', 'layer_3', 'rollout', 'any_object', 'among_objects', 'pixel_share'}
    assert all(res['any_object'][k] >= res[k] - 1e-9 for k in ('layer_0', 'rollout'))  # the named object is one of the objects
    assert all(0 <= res[k] <= 1 for k in ('chance', 'object_chance', 'layer_0', 'layer_3', 'rollout'))
    assert 0 < res['object_chance'] <= 1
    with pytest.raises(ValueError, match='names a single object'):
        pointing_game(model, processor, [])
