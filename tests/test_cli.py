"Command line: --help of each script, the demo's --quick run and its contract, finetune/eval round trips (synthetic and real-format files), bad input."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from fastcore.script import CliError
from pixelbert.cli import finetune_cli, eval_cli, demo_cli, parse_data_spec
from pixelbert.synth import NLVR2_TEMPLATES
from pixelbert.trainer import read_log

torch.set_num_threads(1)  # tiny models on a shared CPU: one thread is fastest
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PYTHONHASHSEED='0', MPLBACKEND='Agg', TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1',
           TRANSFORMERS_OFFLINE='1', OMP_NUM_THREADS='1')
SMALL = dict(steps=2, n_images=12, eval_images=4, batch_size=6, no_progress=True, threads=1)

def run(*args, timeout=600):
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, env=ENV, timeout=timeout)

CONTRACT = {'device', 'seconds', 'pretrain', 'vqa', 'nlvr2', 'retrieval'}
SUBKEYS = dict(pretrain={'mlm_accuracy', 'itm_accuracy'},
               vqa={'accuracy', 'question_only_accuracy', 'from_scratch_accuracy', 'per_type'},
               nlvr2={'accuracy'},
               retrieval={'pool_images', 'tr_r1', 'tr_r5', 'tr_r10', 'ir_r1', 'ir_r5', 'ir_r10'})

@pytest.mark.parametrize('script', ['pixelbert-demo', 'pixelbert-finetune', 'pixelbert-eval'])
def test_help(script):
    r = run(script, '--help', timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'usage:' in r.stdout and '--out' in r.stdout
    if script != 'pixelbert-demo': assert 'vqa, nlvr2 or retrieval' in r.stdout
    if script != 'pixelbert-demo':  # optional paths in brackets, as the code reads them
        assert 'nlvr2:JSONL[,IMAGES]' in r.stdout and 'karpathy:JSON[,IMAGES]' in r.stdout and 'nlvr2:JSONL,IMAGES' not in r.stdout
    if script == 'pixelbert-finetune': assert '--overwrite' in r.stdout and 'vqa:QUESTIONS,ANNOTATIONS[,IMAGES]' in r.stdout
    if script == 'pixelbert-eval': assert 'vqa:QUESTIONS[,ANNOTATIONS[,IMAGES]]' in r.stdout and 'FILE (not a folder)' in r.stdout

def test_demo_quick(tmp_path):
    out = tmp_path / 'demo'
    r = run('pixelbert-demo', '--quick', '--out', out, '--no-progress', '--threads', '1')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '[6/6]' in r.stderr  # progress per stage
    m = json.loads((out / 'metrics.json').read_text())
    assert CONTRACT <= set(m)
    for k, sub in SUBKEYS.items(): assert sub <= set(m[k]), (k, set(m[k]))
    assert m['device'] == 'cpu' and m['seconds'] > 0
    for k, sub in SUBKEYS.items():
        for s in sub - {'per_type', 'pool_images'}: assert 0 <= m[k][s] <= 1, (k, s, m[k][s])
    assert set(m['vqa']['per_type']) == {'color', 'shape', 'size', 'count', 'exists', 'relation'}
    tw = m['pretrain']['itm_twins']  # each held-out caption against its false twins, per edit kind
    assert set(tw['pairs']) <= {'color', 'shape', 'size', 'count', 'relation'} and sum(tw['pairs'].values()) > 0
    assert all(0 <= tw[k] <= 1 for k in [*tw['pairs'], 'all']) and 'the ITM head prefers the true caption' in (out / 'report.md').read_text()
    assert m['retrieval']['pool_images'] == 30 and m['retrieval']['tr_r1'] <= m['retrieval']['tr_r5'] <= m['retrieval']['tr_r10']
    assert {'pretrained', 'untrained', 'best_layer'} <= set(m['grounding']) and set(m['stages']) >= {'pretrain', 'vqa', 'nlvr2'}
    g = m['grounding']['pretrained']  # the named object among the hits on any object, against a random object's rate
    assert set(g['among_objects']) == {'layer_0', 'layer_1', 'layer_2', 'layer_3', 'rollout'} and 0 < g['object_chance'] <= 1
    assert 'a random object' in (out / 'report.md').read_text()
    pk = m['nlvr2']['per_kind']  # per statement kind, the rows adding up to the test pairs
    assert set(pk) <= set(NLVR2_TEMPLATES) | {'and'} and sum(s['n'] for s in pk.values()) == m['nlvr2']['n_test']
    assert 'NLVR2 accuracy per statement kind' in (out / 'report.md').read_text()
    pngs = ['loss_curves.png', 'grounding.png', 'vqa_examples.png', 'attention_caption.png', 'attention_question.png']
    for p in pngs: assert (out / p).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', p
    report = (out / 'report.md').read_text()
    assert all(f'({p})' in report for p in pngs) and '| VQA' in report and 'from scratch' in report
    # the demo's run folders are usable by the other commands: evaluate its VQA model on two test images
    assert (out / 'vqa' / 'final' / 'model.safetensors').is_file() and (out / 'pretrain' / 'final' / 'config.json').is_file()
    res = json.loads((out / 'vqa' / 'test_results.json').read_text())
    assert {'question_id', 'answer'} == set(res[0])

def test_finetune_eval_synthetic(tmp_path, capsys):
    "VQA and NLVR2 from scratch, then retrieval from a saved pre-training model (ranking head from ITM), each evaluated by pixelbert-eval."
    assert finetune_cli('vqa', out=str(tmp_path / 'vqa'), **SMALL) == 0
    m = json.loads((tmp_path / 'vqa' / 'metrics.json').read_text())
    assert m['init'] == 'scratch' and m['steps'] == 2 and 0 <= m['eval']['accuracy'] <= 1 and m['eval']['n'] == 12
    assert json.loads((tmp_path / 'vqa' / 'val_results.json').read_text())[0].keys() == {'question_id', 'answer'}
    assert (tmp_path / 'vqa' / 'final' / 'answers.json').is_file() and not list((tmp_path / 'vqa').glob('checkpoint-*'))
    # a finished run is not overwritten by accident; --overwrite replaces it (its old metrics and results go first)
    with pytest.raises(CliError, match=r'already holds a finished run \(final/\); pass --overwrite'): finetune_cli('vqa', out=str(tmp_path / 'vqa'), **SMALL)
    (tmp_path / 'vqa' / 'notes.txt').write_text('mine')
    assert finetune_cli('vqa', out=str(tmp_path / 'vqa'), overwrite=True, **SMALL | dict(steps=1, eval_images=2)) == 0
    m = json.loads((tmp_path / 'vqa' / 'metrics.json').read_text())
    assert m['steps'] == 1 and m['eval']['n'] == 6 and len(json.loads((tmp_path / 'vqa' / 'val_results.json').read_text())) == 6
    assert (tmp_path / 'vqa' / 'notes.txt').read_text() == 'mine' and [r['step'] for r in read_log(tmp_path / 'vqa' / 'log.jsonl')] == [1]
    assert eval_cli('vqa', model=str(tmp_path / 'vqa'), n_images=3, out=str(tmp_path / 'ev' / 'vqa.json'), threads=1) == 0
    ev = json.loads((tmp_path / 'ev' / 'vqa.json').read_text())
    assert ev['n'] == 9 and set(ev['per_type']) and Path(ev['results_file']).name == 'vqa_results.json'
    assert len(json.loads(Path(ev['results_file']).read_text())) == 9
    assert finetune_cli('nlvr2', out=str(tmp_path / 'nl'), **SMALL) == 0
    capsys.readouterr()
    assert eval_cli('nlvr2', model=str(tmp_path / 'nl'), n_images=8, out=str(tmp_path / 'ev' / 'nl.json'), threads=1) == 0
    ev, shown = json.loads((tmp_path / 'ev' / 'nl.json').read_text()), capsys.readouterr().out
    assert ev['n'] == 8 and sum(s['n'] for s in ev['per_kind'].values()) == 8 and set(ev['per_kind']) <= set(NLVR2_TEMPLATES) | {'and'}
    assert json.loads(shown[shown.index('{'):])['per_kind'] == ev['per_kind']  # printed too, beside the overall accuracy

    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import PixelBertForPreTraining, pretraining_config
    proc = PixelBertProcessor.from_preset('tiny')
    torch.manual_seed(0)
    pre = PixelBertForPreTraining(pretraining_config('tiny', proc.tokenizer))
    pre.save_pretrained(tmp_path / 'pre' / 'final'); proc.save_pretrained(tmp_path / 'pre' / 'final')
    assert finetune_cli('retrieval', out=str(tmp_path / 'ret'), model=str(tmp_path / 'pre'), **SMALL) == 0
    m = json.loads((tmp_path / 'ret' / 'metrics.json').read_text())
    assert 'ranking head from the ITM head' in m['init'] and m['eval']['pool_images'] == 4
    assert eval_cli('retrieval', model=str(tmp_path / 'ret' / 'final'), n_images=5, mode='both', k=2,
                    out=str(tmp_path / 'ev' / 'ret.json'), threads=1) == 0
    ev = json.loads((tmp_path / 'ev' / 'ret.json').read_text())
    assert ev['pool_images'] == 5 and ev['fast']['pairs'] < ev['exact']['pairs'] == 25
    from pixelbert.retrieval import DUAL_WEIGHT  # the default score adds the dual logits; the paper's score comes beside it
    assert ev['dual_weight'] == DUAL_WEIGHT > 0 and set(ev['exact']['cross_only']) >= {'tr_r1', 'ir_r1'}
    assert eval_cli('retrieval', model=str(tmp_path / 'ret' / 'final'), n_images=5, dual_weight=0,
                    out=str(tmp_path / 'ev' / 'ret0.json'), threads=1) == 0
    ev0 = json.loads((tmp_path / 'ev' / 'ret0.json').read_text())  # --dual-weight 0: the cross-encoder alone
    assert ev0['dual_weight'] == 0 and 'cross_only' not in ev0['exact']
    assert {k: ev0[k] for k in ev['exact']['cross_only']} == ev['exact']['cross_only']
    with pytest.raises(CliError, match='--dual-weight is for retrieval'):
        eval_cli('vqa', model=str(tmp_path / 'vqa'), n_images=3, dual_weight=1, threads=1)
    # --fresh-pooler: VQA from the same pre-trained folder, its pooler left as the head's initialisation made it
    assert finetune_cli('vqa', out=str(tmp_path / 'vqa_fp'), model=str(tmp_path / 'pre'), fresh_pooler=True, **SMALL | dict(steps=1)) == 0
    assert 'a fresh pooler' in json.loads((tmp_path / 'vqa_fp' / 'metrics.json').read_text())['init']
    with pytest.raises(CliError, match='--fresh-pooler takes vqa or nlvr2'):
        finetune_cli('retrieval', out=str(tmp_path / 'x'), model=str(tmp_path / 'pre'), fresh_pooler=True, **SMALL)

@pytest.mark.parametrize('task', ['vqa', 'nlvr2', 'retrieval'])
def test_finetune_stop_and_resume(tmp_path, task):
    "A fine-tuning cut by --stop-after keeps its checkpoint and no final model; --resume ends where an uncut run ends."
    from safetensors.torch import load_file
    kw = SMALL | dict(steps=5, save_every=2, n_images=12, eval_images=3)
    assert finetune_cli(task, out=str(tmp_path / 'whole'), **kw) == 0
    assert finetune_cli(task, out=str(tmp_path / 'cut'), stop_after=3, **kw) == 0
    cut = tmp_path / 'cut'
    assert not (cut / 'final').exists() and not (cut / 'metrics.json').exists() and [p.name for p in cut.glob('checkpoint-*')] == ['checkpoint-3']
    with pytest.raises(CliError, match=r'the checkpoints of an unfinished run \(checkpoint-3\); pass --overwrite to replace it, --resume to continue it'):
        finetune_cli(task, out=str(cut), **kw)
    assert finetune_cli(task, out=str(cut), resume=True, **kw) == 0
    assert (cut / 'final').is_dir() and not list(cut.glob('checkpoint-*')) and (cut / 'metrics.json').is_file()
    drop = lambda log: [{k: v for k, v in r.items() if k not in ('pairs_per_s', 'elapsed_s')} for r in log]
    assert drop(read_log(cut / 'log.jsonl')) == drop(read_log(tmp_path / 'whole' / 'log.jsonl'))
    a, b = load_file(str(cut / 'final' / 'model.safetensors')), load_file(str(tmp_path / 'whole' / 'final' / 'model.safetensors'))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CliError, match='holds a finished run \\(final/\\): there is nothing to resume'):
        finetune_cli(task, out=str(cut), resume=True, **kw)

def test_finetune_resume_takes_the_recorded_options(tmp_path, capsys):
    "--resume with only --out continues a run with the options it recorded; a changed option is refused, naming both values; a folder without the record (an older version) needs them again."
    from safetensors.torch import load_file
    kw = SMALL | dict(steps=4, save_every=2, n_images=6, eval_images=2)
    assert finetune_cli('vqa', out=str(tmp_path / 'whole'), **kw) == 0
    cut = tmp_path / 'cut'
    assert finetune_cli('vqa', out=str(cut), stop_after=2, **kw) == 0
    rec = json.loads((cut / 'finetune_args.json').read_text())  # the options, defaults filled in
    assert {k: rec[k] for k in ('task', 'n_images', 'steps', 'batch_size', 'save_every', 'data', 'preset', 'seed', 'warmup', 'model')} == \
        dict(task='vqa', n_images=6, steps=4, batch_size=6, save_every=2, data='synthetic', preset='tiny', seed=0, warmup=0.1, model=None)
    with pytest.raises(CliError, match=r'holds a run started with --n-images 6, not --n-images 8: leave --n-images out to continue it'):
        finetune_cli('vqa', out=str(cut), resume=True, n_images=8, no_progress=True)
    with pytest.raises(CliError, match='holds a vqa run, not nlvr2'): finetune_cli('nlvr2', out=str(cut), resume=True, no_progress=True)
    capsys.readouterr()
    assert finetune_cli('vqa', out=str(cut), resume=True, stop_after=1, no_progress=True, threads=1) == 0  # nothing but --out: one more step
    assert f"stopped at checkpoint-3 (--stop-after); continue with: pixelbert-finetune vqa --out {cut} --resume" in capsys.readouterr().err
    (cut / 'finetune_args.json').unlink()  # a run of an older version: its options must be given again, as before
    assert finetune_cli('vqa', out=str(cut), resume=True, **kw) == 0
    assert f"{cut} has no finetune_args.json (a run of an older version)" in capsys.readouterr().err
    assert (cut / 'finetune_args.json').is_file()  # recorded from then on
    drop = lambda log: [{k: v for k, v in r.items() if k not in ('pairs_per_s', 'elapsed_s')} for r in log]
    assert drop(read_log(cut / 'log.jsonl')) == drop(read_log(tmp_path / 'whole' / 'log.jsonl'))
    a, b = load_file(str(cut / 'final' / 'model.safetensors')), load_file(str(tmp_path / 'whole' / 'final' / 'model.safetensors'))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def _interrupt(args, signum, wait:float):
    "Start the console script `args`, send `signum` `wait` s into its training loop; (exit status, stderr, the one checkpoint's step)."
    import time
    p = subprocess.Popen([str(BIN / args[0]), *map(str, args[1:])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    while 'training samples' not in (line := p.stderr.readline()):  # the training loop starts after this line
        assert line or p.poll() is None, p.stderr.read()
    time.sleep(wait); p.send_signal(signum)
    out, err = p.communicate(timeout=300)
    ck = [c.name for c in Path(args[3]).glob('checkpoint-*')]
    assert len(ck) == 1 and not (Path(args[3]) / 'final').exists(), (ck, err)
    return p.returncode, err, int(ck[0].split('-')[1])

def test_finetune_retrieval_sigint_keeps_a_checkpoint(tmp_path):
    "Ctrl-C during retrieval fine-tuning: a checkpoint of the last finished step, exit 130, and --resume finishes the run."
    import signal
    args = ['pixelbert-finetune', 'retrieval', '--out', tmp_path / 'r', '--steps', 400, '--n-images', 12, '--eval-images', 3,
            '--batch-size', 6, '--threads', 1, '--no-progress']
    rc, err, step = _interrupt(args, signal.SIGINT, 3)
    assert rc == 130 and 0 < step < 400, err
    assert f"on SIGINT; continue with: pixelbert-finetune retrieval --out {tmp_path / 'r'} --resume" in err, err
    r = run(*args[:4], '--threads', 1, '--no-progress', '--resume', '--stop-after', 1)  # the recorded options; one more step, then stop again
    assert r.returncode == 0 and f"checkpoint-{step + 1}" in r.stderr, r.stderr

def test_finetune_sigterm_exits_143(tmp_path):
    "SIGTERM (a cluster's preemption) during VQA fine-tuning: a checkpoint, no final model, exit 128 + 15 (Ctrl-C: 130, above)."
    import signal
    args = ['pixelbert-finetune', 'vqa', '--out', tmp_path / 'v', '--steps', 2000, '--n-images', 6, '--eval-images', 2,
            '--batch-size', 6, '--threads', 1, '--no-progress']
    rc, err, step = _interrupt(args, signal.SIGTERM, 2)
    assert rc == 143 and 0 < step < 2000, err
    assert f"stopped at checkpoint-{step} on SIGTERM; continue with: pixelbert-finetune vqa --out {tmp_path / 'v'} --resume" in err, err

def test_real_format_files(tmp_path):
    "Files written by pixelbert-synth go through the real readers: NLVR2 JSON lines, VQA v2 JSON, a Karpathy split."
    r = run('pixelbert-synth', '--out', tmp_path / 'w', '--n-images', 8)
    assert r.returncode == 0, r.stderr[-2000:]
    w = tmp_path / 'w'
    nl = f"nlvr2:{w / 'nlvr2' / 'data' / 'train.json'}"
    assert finetune_cli('nlvr2', out=str(tmp_path / 'nl'), data=nl, eval_data=f"nlvr2:{w / 'nlvr2' / 'data' / 'dev.json'}", **SMALL) == 0
    m = json.loads((tmp_path / 'nl' / 'metrics.json').read_text())
    assert m['eval']['n'] == 8 and 0 <= m['eval']['accuracy'] <= 1
    assert eval_cli('nlvr2', model=str(tmp_path / 'nl'), data=f"nlvr2:{w / 'nlvr2' / 'data' / 'dev.json'},{w / 'nlvr2' / 'images' / 'dev'}",
                    out=str(tmp_path / 'ev' / 'nl.json'), threads=1) == 0
    lines = (tmp_path / 'ev' / 'nl_predictions.csv').read_text().splitlines()
    assert len(lines) == 8 and lines[0].rsplit(',', 1)[1] in ('True', 'False')
    q = w / 'vqa' / 'Questions' / 'v2_OpenEnded_mscoco_train2014_questions.json'
    a = w / 'vqa' / 'Annotations' / 'v2_mscoco_train2014_annotations.json'
    assert finetune_cli('vqa', out=str(tmp_path / 'vq'), data=f'vqa:{q},{a}', **SMALL) == 0
    assert 'eval' not in json.loads((tmp_path / 'vq' / 'metrics.json').read_text())  # real data and no --eval-data: no metrics
    qv = w / 'vqa' / 'Questions' / 'v2_OpenEnded_mscoco_val2014_questions.json'
    av = w / 'vqa' / 'Annotations' / 'v2_mscoco_val2014_annotations.json'
    assert eval_cli('vqa', model=str(tmp_path / 'vq'), data=f'vqa:{qv},{av}', out=str(tmp_path / 'ev' / 'vq.json'), threads=1) == 0
    assert json.loads((tmp_path / 'ev' / 'vq.json').read_text())['n'] == 24
    assert eval_cli('vqa', model=str(tmp_path / 'vq'), data=f'vqa:{qv}', out=str(tmp_path / 'ev' / 'vq_test.json'), threads=1) == 0
    ev = json.loads((tmp_path / 'ev' / 'vq_test.json').read_text())  # questions only, like test-dev: predictions only
    assert ev['accuracy'] is None and len(json.loads((tmp_path / 'ev' / 'vq_test_results.json').read_text())) == 24
    kp = w / 'karpathy' / 'dataset_flickr30k.json'
    with pytest.raises(CliError, match='holds a PixelBertForVQA, not a PixelBertForRetrieval'):
        eval_cli('retrieval', model=str(tmp_path / 'vq'), data=f'karpathy:{kp}', threads=1)

def test_bad_input(tmp_path):
    with pytest.raises(CliError, match="unknown task 'caption'"): finetune_cli('caption', out=str(tmp_path / 'x'), **SMALL)
    with pytest.raises(CliError, match='--out DIR is required'): finetune_cli('vqa', **SMALL)
    with pytest.raises(CliError, match='does not exist'): finetune_cli('vqa', out=str(tmp_path / 'x'), model=str(tmp_path / 'none'), **SMALL)
    with pytest.raises(CliError, match="unknown kind 'coco'"): finetune_cli('vqa', out=str(tmp_path / 'x'), data='coco:a.json', **SMALL)
    with pytest.raises(CliError, match='questions file'): finetune_cli('vqa', out=str(tmp_path / 'x'), data='vqa:/no/q.json', **SMALL)
    with pytest.raises(CliError, match='--model DIR is required'): eval_cli('vqa')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CliError, match='config.json and model.safetensors missing'): eval_cli('nlvr2', model=str(tmp_path / 'empty'))
    with pytest.raises(CliError, match='--mode must be'): eval_cli('retrieval', model=str(tmp_path / 'empty'), mode='approx')
    with pytest.raises(CliError, match='no CUDA GPU'):
        if torch.cuda.is_available(): raise CliError('no CUDA GPU (skipped: this machine has one)')
        demo_cli(out=str(tmp_path / 'd'), quick=True, device='cuda')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(CliError, match='is a file'): demo_cli(out=str(tmp_path / 'file'), quick=True)
    # the scripts themselves: a clear message and a non-zero exit status, no traceback
    r = run('pixelbert-finetune', 'nlvr2', '--out', tmp_path / 'y', '--data', 'vqa:x.json', timeout=120)
    assert r.returncode != 0 and 'holds vqa data, but the task is nlvr2' in r.stderr and 'Traceback' not in r.stderr
    r = run('pixelbert-eval', 'vqa', '--model', tmp_path / 'missing', timeout=120)
    assert r.returncode != 0 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr


def test_bad_sizes_and_out_paths(tmp_path):
    "From a new-user audit: sizes below 1, --out paths that are files or folders, questions without answers, --device cuda with no GPU: one line, no traceback, nothing written."
    (tmp_path / 'file').write_text('x'); (tmp_path / 'E').mkdir()
    def refused(args, msg):
        r = run(*args, timeout=180)
        assert r.returncode == 1 and msg in r.stderr and 'Traceback' not in r.stderr, (args, r.stderr[-2000:])
    small = ['--steps', 1, '--n-images', 4, '--threads', 1, '--no-progress']
    refused(['pixelbert-finetune', 'vqa', '--out', tmp_path / 'g', *small, '--eval-images', 0], 'pixelbert-finetune: --eval-images must be at least 1, got 0')
    refused(['pixelbert-finetune', 'retrieval', '--out', tmp_path / 'g', *small, '--eval-images', -1], '--eval-images must be at least 1, got -1')
    refused(['pixelbert-finetune', 'vqa', '--out', tmp_path / 'g', '--n-images', 0], '--n-images must be at least 1, got 0')
    refused(['pixelbert-finetune', 'vqa', '--out', tmp_path / 'g', *small, '--batch-size', -4], '--batch-size must be at least 1, got -4')
    refused(['pixelbert-finetune', 'nlvr2', '--out', tmp_path / 'g', *small, '--batch-size', 0], '--batch-size must be at least 1, got 0')
    refused(['pixelbert-finetune', 'vqa', '--out', tmp_path / 'file', *small], f"--out {tmp_path / 'file'} is a file, not a folder")
    refused(['pixelbert-eval', 'vqa', '--model', tmp_path / 'm', '--batch-size', 0], 'pixelbert-eval: --batch-size must be at least 1, got 0')
    refused(['pixelbert-eval', 'retrieval', '--model', tmp_path / 'm', '--mode', 'fast', '--k', 0], '--k must be at least 1, got 0')
    refused(['pixelbert-eval', 'vqa', '--model', tmp_path / 'm', '--out', tmp_path / 'E'], f"--out {tmp_path / 'E'} is a folder; give the file to write the metrics to")
    refused(['pixelbert-synth', '--out', tmp_path / 'file', '--n-images', 2], f"pixelbert-synth: --out {tmp_path / 'file'} is a file, not a folder")
    refused(['pixelbert-synth', '--out', tmp_path / 'S', '--n-images', 2, '--image-size', 0], 'pixelbert-synth: --image-size must be at least 16, got 0')
    q = tmp_path / 'q.json'; q.write_text('{"questions": []}')
    refused(['pixelbert-finetune', 'vqa', '--out', tmp_path / 'g', *small, '--data', f'vqa:{q}'], 'training needs the annotations file, vqa:QUESTIONS,ANNOTATIONS[,IMAGES]')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['E', 'file', 'q.json'] and not list((tmp_path / 'E').iterdir())
    # pixelbert-viz: an --out that is a file, and --device cuda without a GPU, with the message finetune and eval give
    from pixelbert.model import PixelBertModel, PixelBertConfig
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.synth import make_scene
    proc = PixelBertProcessor.from_preset('tiny')
    PixelBertModel(PixelBertConfig.from_preset('tiny', vocab_size=len(proc.tokenizer))).save_pretrained(tmp_path / 'm')
    proc.save_pretrained(tmp_path / 'm'); make_scene(0, 'val', 0).render(128).save(tmp_path / 'im.png')
    viz = ['pixelbert-viz', '--model', tmp_path / 'm', '--image', tmp_path / 'im.png', '--text', 'a red circle']
    refused([*viz, '--out', tmp_path / 'file'], f"pixelbert-viz: --out {tmp_path / 'file'} is a file, not a folder")
    refused([*viz, '--out', tmp_path / 'v', '--layer', 'foo'], "pixelbert-viz: --layer must be 'rollout' or a layer index")
    if not torch.cuda.is_available(): refused([*viz, '--out', tmp_path / 'v', '--device', 'cuda'], 'pixelbert-viz: --device cuda: no CUDA GPU is available here')
    assert not (tmp_path / 'v').exists()
