"""`scripts/bench_gpu.py` end to end on the CPU with `--tiny`: every phase but torch.compile runs and writes its JSON.

The GPU numbers themselves come from a GPU session (see nbs/16_gpu.ipynb); this checks that the one command a
GPU session runs works, and that its output has the fields the chapter's `show_gpu_results` reads.
"""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_gpu_tiny_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', MPLBACKEND='Agg', TOKENIZERS_PARALLELISM='false')
    p = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'bench_gpu.py'), '--device', 'cpu', '--tiny', '--threads', '1',
                        '--out', str(tmp_path)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads((tmp_path / 'bench_gpu.json').read_text())
    assert not r['errors'], r['errors']
    for name in ('baseline fp32 eager', 'pixelbert fp32 eager', 'baseline bf16 channels-last', 'pixelbert bf16 channels-last'):
        assert r['training'][name]['pairs_per_s'] > 0, name
    assert 'skipped' in r['training']['pixelbert bf16 channels-last compile']['error']
    assert set(r['inference']) == {'baseline fp32', 'pixelbert fp32'}
    assert all(v['ms_per_pair_batch1'] > 0 for v in r['inference'].values())
    pipe = r['pipeline']
    assert len(pipe['log']) == 4 and 0 < pipe['busy_fraction'] <= 1 and pipe['loader_pairs_per_s'] > 0
    assert (tmp_path / 'loss_curve.png').is_file() and (tmp_path / 'bench_gpu.txt').is_file()
    assert 'ratios' in r


def test_bench_gpu_budget(tmp_path):
    "With no time budget every phase is skipped and recorded as such, not silently dropped."
    from importlib import util
    spec = util.spec_from_file_location('bench_gpu', ROOT / 'scripts' / 'bench_gpu.py')
    mod = util.module_from_spec(spec); spec.loader.exec_module(mod)
    r = mod.main(['--device', 'cpu', '--tiny', '--budget-s', '0', '--out', str(tmp_path)])
    assert all('skipped' in v['error'] for v in r['training'].values())
    assert all('skipped' in v['error'] for v in r['inference'].values())


def test_gpu_session_script_on_cpu(tmp_path):
    "`scripts/gpu_session.sh`, the one command a GPU session runs, end to end on the CPU (benchmark phases skipped by budget)."
    env = dict(os.environ, OUT=str(tmp_path), BUDGET='0', DEVICE='cpu', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    p = subprocess.run(['bash', str(ROOT / 'scripts' / 'gpu_session.sh')], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert all('skipped' in v['error'] for v in json.loads((tmp_path / 'bench_gpu.json').read_text())['training'].values())
    log = (tmp_path / 'torchrun.txt').read_text()
    assert log.count('rc=0') == 2 and 'resuming from' in log and 'checkpoint-30' in log, log[-2000:]
    assert 'rc=0' in (tmp_path / 'demo_quick.txt').read_text()
    assert json.loads((tmp_path / 'demo_quick_metrics.json').read_text())['device'] == 'cpu'
