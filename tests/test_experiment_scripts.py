"""The experiment scripts behind chapter 15's diagnosis run end to end (tiny sizes: the code paths, not the figures).

`scripts/vqa_plateau.py` and `scripts/cached_pretraining.py` read a pre-training `final/` folder; here it is an untrained
`tiny` model saved the way `pixelbert-pretrain` saves one."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def final(tmp_path_factory):
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import PixelBertForPreTraining, pretraining_config
    out = tmp_path_factory.mktemp('pretrain') / 'final'
    proc = PixelBertProcessor.from_preset('tiny')
    torch.manual_seed(0)
    PixelBertForPreTraining(pretraining_config('tiny', proc.tokenizer, pixel_position_embedding=True)).save_pretrained(out)
    proc.save_pretrained(out)
    return out

def run(script, *args):
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / script), *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout

def test_vqa_plateau(final, tmp_path):
    out = tmp_path / 'plateau.json'
    run('vqa_plateau.py', '--model', final, '--images', 40, '--test-images', 10, '--single-steps', 2, '--all-steps', 2,
        '--every', 1, '--batch', 4, '--starts', 'fresh', '--json', out)
    r = json.loads(out.read_text())
    assert set(r['probe']) >= {'color_max_pool', 'shape_mean_pool'} and 0 <= r['probe']['color_max_pool'] <= 1
    assert r['object_probe']['objects'] > 50 and 0 <= r['object_probe']['shape'] <= 1
    assert 'all_questions/fresh' in r and 'all_questions/pretrained' not in r  # --starts picks the runs
    assert [c['step'] for c in r['all_questions/fresh']['curve']] == [1, 2]
    probes = tmp_path / 'probes.json'  # 0 steps: the probes alone
    run('vqa_plateau.py', '--model', final, '--images', 40, '--test-images', 10, '--single-steps', 0, '--all-steps', 0, '--json', probes)
    r0 = json.loads(probes.read_text())
    assert r0['object_probe'] == r['object_probe'] and not any('/' in k for k in r0)

def test_cached_pretraining(final, tmp_path):
    out = tmp_path / 'cached.json'
    run('cached_pretraining.py', '--visual', final, '--steps', 6, '--every', 3, '--images', 20, '--batch', 4, '--content', 1,
        '--hard', 0.5, '--mlm-after', 0.5,  # ITM alone for steps 1-2, then MLM
        '--vqa-steps', 2, '--vqa-images', 20, '--test-images', 10, '--out', out)
    r = json.loads(out.read_text())
    assert [c['step'] for c in r['curve']] == [3, 6]
    last = r['curve'][-1]
    for kind in ('color', 'shape', 'size', 'number'):  # every kind of word is probed, with and without its own image
        assert 0 <= last[kind] <= 1 and 0 <= last[f'{kind}_wrong_image'] <= 1
    assert 0 <= last['itm'] <= 1 and r['vqa']['n_train'] == 60
