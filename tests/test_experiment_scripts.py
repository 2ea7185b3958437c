"""The experiment scripts behind chapter 15's diagnosis run end to end (tiny sizes: the code paths, not the figures).

`scripts/vqa_plateau.py` and `scripts/cached_pretraining.py` read a pre-training `final/` folder; here it is an untrained
`tiny` model saved the way `pixelbert-pretrain` saves one."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from pixelbert.cli import DemoConfig

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

@pytest.mark.parametrize('schedule', ['blocked', 'first:color:1'])
def test_vqa_plateau_custom_run(final, tmp_path, schedule):
    "The custom run: chosen question types and scene sizes, batches by schedule."
    out = tmp_path / 'custom.json'
    run('vqa_plateau.py', '--model', final, '--images', 40, '--test-images', 20, '--single-steps', 0, '--all-steps', 0,
        '--custom-steps', 2, '--types', 'color,shape', '--objects', '1-2', '--schedule', schedule, '--every', 1, '--batch', 4,
        '--starts', 'fresh', '--json', out)
    r = json.loads(out.read_text())
    assert [c['step'] for c in r['custom/fresh']['curve']] == [1, 2] and r['args']['schedule'] == schedule
    assert set(r['custom/fresh']['curve'][-1]['per_type']) <= {'color', 'shape'}  # only the chosen types are tested

def test_vqa_batches_schedules():
    "Blocked batches hold one question type each, in turn; first:TYPE:N keeps to TYPE for N steps."
    sys.path.insert(0, str(ROOT / 'scripts'))
    from vqa_plateau import batches
    items = [(i, 'q', ['a'] * 10, t) for i, t in enumerate(['color', 'shape', 'size'] * 20)]
    g = torch.Generator().manual_seed(0)
    blocked = batches(items, 'blocked', 8, g)
    assert [{q[3] for q in blocked(s)} for s in (0, 1, 2, 3)] == [{'color'}, {'shape'}, {'size'}, {'color'}]
    first = batches(items, 'first:shape:2', 64, g)
    assert {q[3] for q in first(1)} == {q[3] for q in first(2)} == {'shape'} and len({q[3] for q in first(3)}) == 3
    with pytest.raises(ValueError, match='first:TYPE:N'): batches(items, 'first:count:5', 8, g)(1)

def test_cached_pretraining(final, tmp_path):
    out = tmp_path / 'cached.json'
    log = run('cached_pretraining.py', '--visual', final, '--steps', 6, '--every', 3, '--images', 20, '--batch', 4, '--content', 1,
              '--hard', 0.5, '--mlm-after', 0.5,  # ITM alone for steps 1-2, then MLM
              '--color-first', 2,  # steps 1-2: ITM against colour-swapped twins only
              '--first-objects', '1:3',  # step 3 on one-object scenes only
              '--vqa-steps', 2, '--vqa-images', 20, '--test-images', 10, '--out', out)
    from pixelbert.synth import SynthCaptions
    ds = SynthCaptions('train', n_images=20, seed=0)
    ones = sum(len(s.objects) == 1 for s in ds.scenes) * ds.captions_per_image
    assert f"first 3 steps: {ones} captions of scenes with at most 1 object\n" in log and ones > 0
    assert "first 2 steps: ITM on " in log and "captions against their colour-swapped twins" in log
    r = json.loads(out.read_text())
    assert [c['step'] for c in r['curve']] == [3, 6]
    last = r['curve'][-1]
    for kind in ('color', 'shape', 'size', 'number'):  # every kind of word is probed, with and without its own image
        assert 0 <= last[kind] <= 1 and 0 <= last[f'{kind}_wrong_image'] <= 1
    assert 0 <= last['itm'] <= 1 and r['vqa']['n_train'] == 60
    assert 0 <= last['itm_color_swap'] <= 1 and last['color_swap_pairs'] > 0  # captions against their colour-swapped twins

def test_cached_pretraining_bad_first_objects(final, tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'cached_pretraining.py'), '--visual', str(final), '--first-objects', 'one',
                        '--out', str(tmp_path / 'x.json')], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "--first-objects takes N:S" in p.stderr

def test_itm_twins(final, tmp_path):
    out = tmp_path / 'twins.json'
    log = run('itm_twins.py', '--model', final, '--images', 6, '--max-items', 12, '--threads', 1, '--json', out)
    r = json.loads(out.read_text())
    for name in ('pretrained', 'untrained'):
        assert name in log and set(r[name]['pairs']) <= {'color', 'shape', 'size', 'count', 'relation'}
        assert sum(r[name]['pairs'].values()) >= 12 and all(0 <= r[name][k] <= 1 for k in [*r[name]['pairs'], 'all'])
    assert r['pretrained']['pairs'] == r['untrained']['pairs']  # the same captions and twins for both

def test_nlvr2_probe(final, tmp_path):
    out = tmp_path / 'probe.json'
    log = run('nlvr2_probe.py', '--model', final, '--kinds', 'side_exists,both_exists', '--desc', 'color', '--pairs', 16,
              '--test', 12, '--steps', 2, '--batch', 4, '--out', tmp_path / 'run', '--json', out)
    r = json.loads(out.read_text())
    assert 'test accuracy' in log and r['n'] == 12 and r['n_train'] == 16 and len(r['train_log']) >= 1
    assert set(r['per_kind']) <= {'side_exists', 'both_exists'} and sum(s['n'] for s in r['per_kind'].values()) == 12
    assert '--kinds side_exists,both_exists' in r['command'] and '--desc color' in r['command']
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'nlvr2_probe.py'), '--model', str(final), '--kinds', 'sides',
                        '--out', str(tmp_path / 'x')], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "unknown statement kinds ['sides']" in p.stderr

def test_cached_pretraining_focus(final, tmp_path):
    "--focus color:2: the first 2 steps are MLM alone on one colour word per caption; then the recipe."
    out = tmp_path / 'focus.json'
    run('cached_pretraining.py', '--visual', final, '--steps', 4, '--every', 2, '--images', 20, '--batch', 4, '--focus', 'color+shape:2',
        '--vqa-steps', 1, '--vqa-images', 20, '--test-images', 10, '--out', out)
    r = json.loads(out.read_text())
    assert r['args']['focus'] == 'color+shape:2' and [c['step'] for c in r['curve']] == [2, 4]
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'cached_pretraining.py'), '--visual', str(final), '--focus', 'colour:5',
                        '--out', str(tmp_path / 'x.json')], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "unknown word kind(s) ['colour']" in p.stderr

def test_pretrain_then_vqa(tmp_path):
    "The demo's pre-training with focused masking mid-run, then its VQA run: result.json with both."
    out = tmp_path / 'run'
    log = run('pretrain_then_vqa.py', '--out', out, '--quick', '--set', 'mlm_focus=colors', 'focus_steps=5', 'focus_itm=True',
              'model.backbone=tiny_cnn_deep')
    r = json.loads((out / 'result.json').read_text())
    model = DemoConfig().model | dict(backbone='tiny_cnn_deep')  # a model field on top of the demo's own overrides
    assert r['settings'] == dict(mlm_focus='colors', focus_steps=5.0, focus_itm=True, model=model)
    assert json.loads((out / 'pretrain' / 'final' / 'config.json').read_text())['backbone'] == 'tiny_cnn_deep'
    assert load_file(out / 'backbone' / 'backbone.safetensors')['stage1.3.weight'].shape == (32, 32, 3, 3)  # the second conv of stage 1
    assert 0 <= r['vqa']['accuracy'] <= 1 and set(r['vqa']['per_type']) >= {'color', 'shape'} and 'twins' in r['pretrain']
    steps = [json.loads(l) for l in (out / 'pretrain' / 'log.jsonl').read_text().splitlines()]
    assert any('mlm_loss' in s for s in steps) and all('itm_loss' in s for s in steps)  # focus with ITM alongside
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'pretrain_then_vqa.py'), '--out', str(tmp_path / 'y'), '--set', 'mlm_fokus=colors'],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "unknown DemoConfig field 'mlm_fokus'" in p.stderr
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'pretrain_then_vqa.py'), '--out', str(tmp_path / 'y'), '--set', 'model.backbon=x'],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "unknown model configuration field 'backbon'" in p.stderr

def test_vqa_from_saved_model(final, tmp_path):
    "--model: no pre-training, the demo's VQA, NLVR2 and retrieval runs from a saved model, with the pooler kept (--set vqa_fresh_pooler=False)."
    out = tmp_path / 'run'
    run('pretrain_then_vqa.py', '--out', out, '--quick', '--model', final, '--set', 'vqa_fresh_pooler=False', '--tasks', 'vqa,nlvr2,retrieval')
    r = json.loads((out / 'result.json').read_text())
    assert r['pretrain'] is None and r['model'] == str(final) and r['settings'] == dict(vqa_fresh_pooler=False)
    assert 0 <= r['vqa']['accuracy'] <= 1 and not (out / 'pretrain').exists()
    assert 0 <= r['nlvr2']['accuracy'] <= 1 and 0 <= r['nlvr2']['predicted_true'] <= 1 and (out / 'nlvr2' / 'test_predictions.csv').is_file()
    assert set(r['retrieval']) == {'tr_r1', 'tr_r5', 'tr_r10', 'ir_r1', 'ir_r5', 'ir_r10'} and r['retrieval_seconds'] >= 0
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'pretrain_then_vqa.py'), '--out', str(tmp_path / 'y'), '--tasks', 'vqa,itm'],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "--tasks: choose from vqa, nlvr2, retrieval" in p.stderr
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'pretrain_then_vqa.py'), '--out', str(tmp_path / 'y'), '--model', str(final),
                        '--set', 'model.backbone=tiny_cnn_deep'], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "--model brings its own configuration" in p.stderr
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'pretrain_then_vqa.py'), '--out', str(tmp_path / 'y'),
                        '--model', str(tmp_path / 'none')], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and 'does not exist' in p.stderr

def test_bench_retrieval(tmp_path):
    "The retrieval benchmark: one exact cross-encoder pass serves both scores and the sweep; a shortlist as long as the pool is exact."
    out = tmp_path / 'bench.json'
    stdout = run('bench_retrieval.py', '--train-images', 8, '--steps', 2, '--batch-size', 4, '--pool', 6, '--k', 6,
                 '--dual-weight', 2, '--sweep', '0,2,5', '--threads', 1, '--json', out)
    r = json.loads(out.read_text())
    assert (r['pool_images'], r['pool_texts'], r['dual_weight'], r['split']) == (6, 6, 2.0, 'test')
    assert [s['dual_weight'] for s in r['sweep']] == [0.0, 2.0, 5.0]
    for s in r['sweep']:  # k = pool: the fast path scores every pair with the same score, so its recalls equal exact's
        assert s['fast']['pairs'] == s['exact']['pairs'] == 36
        assert all(s['fast'][k] == s['exact'][k] for k in ('tr_r1', 'tr_r5', 'ir_r1', 'ir_r5'))
    assert r['cross_only'] == {k: v for k, v in r['sweep'][0].items() if k != 'dual_weight'}
    assert r['per_pair_seconds'] > 0 and 'COCO-5K projection' in stdout and 'cross + 2 x dual' in stdout
