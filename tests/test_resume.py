"""Checkpoints and resume of `pixelbert-pretrain` on the CPU.

- a run stopped by SIGTERM and continued with `--resume` ends bitwise equal to the run that was never stopped
  (final weights and every logged number but the timings);
- a SIGKILL while a checkpoint is being written leaves the previous checkpoint complete and loadable, the
  half-written one is ignored, and resuming from the previous one again ends bitwise equal;
- a training-state file holding a pickle that runs code on load is refused (and the code does not run);
- a new run refuses to write over an existing one without `--resume`.

The runs that get signalled or killed are subprocesses; the others run in this process (saving the import time).
All use one CPU thread, so that they compare bitwise.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, textwrap, time
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

from pixelbert.trainer import (STATE_FILE, UnsafeCheckpointError, list_checkpoints, load_model_weights,
                               load_training_state, pretrain_cli, read_log)
from fastcore.script import CliError

STEPS = 8
ARGS = dict(preset='tiny', steps=STEPS, batch_size=8, n_images=40, eval_batches=0, log_every=1, save_every=3,
            no_progress=True, device='cpu', seed=3, backbone_weights='none')  # the tagging stage has its own test (test_trainer)


def cli_args(out, **kw):
    "Command-line flags for `ARGS` (+ overrides)."
    out_args = []
    for k, v in (ARGS | kw).items():
        flag = '--' + k.replace('_', '-')
        if v is True: out_args.append(flag)
        elif v is not False: out_args += [flag, str(v)]
    return out_args + ['--threads', '1', '--out', str(out)]


DRIVER = 'from pixelbert.trainer import pretrain_cli\nraise SystemExit(pretrain_cli())\n'


SCRIPTS = Path(tempfile.mkdtemp(prefix='pixelbert_test_resume_'))


def script(code, name):
    "A script file (fastcore's `call_parse` reads the command line only when run from a file)."
    path = SCRIPTS / f'{name}.py'
    path.write_text(code)
    return str(path)


def cli(out, **kw):
    return [sys.executable, script(DRIVER, 'pretrain')] + cli_args(out, **kw)


def run(out, **kw):
    "`pixelbert-pretrain` in this process, on one thread like the subprocesses."
    threads = torch.get_num_threads()
    try: assert pretrain_cli(**ARGS | kw, out=str(out), threads=1) == 0
    finally: torch.set_num_threads(threads)


def weights(folder):
    return load_file(str(Path(folder) / 'model.safetensors'))


def assert_same_run(a, b):
    "Final weights bitwise equal; logs equal except for timings."
    wa, wb = weights(a / 'final'), weights(b / 'final')
    assert wa.keys() == wb.keys()
    for k in wa: assert torch.equal(wa[k], wb[k]), k
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ('pairs_per_s', 'elapsed_s')} for r in recs]
    la, lb = strip(read_log(a / 'log.jsonl')), strip(read_log(b / 'log.jsonl'))
    assert [r['step'] for r in lb] == list(range(1, STEPS + 1))
    assert la == lb


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp('resume') / 'full'
    run(out)
    return out


def test_sigterm_then_resume_is_bitwise_equal(uninterrupted, tmp_path):
    out = tmp_path / 'cut'
    p = subprocess.Popen(cli(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(read_log(out / 'log.jsonl')) < 2 and p.poll() is None and time.time() < deadline: time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert 'stopping on signal' in err and '--resume' in err
    stopped = list_checkpoints(out)[-1]
    step = load_training_state(stopped / STATE_FILE)['step']
    assert 2 <= step < STEPS and stopped.name == f'checkpoint-{step}'
    assert not (out / 'final').exists()
    run(out, resume=True)
    assert_same_run(uninterrupted, out)


KILL_DURING_SAVE = textwrap.dedent('''
    import io, os, signal, sys, torch
    real_save, calls = torch.save, []
    def dying_save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: half of the training state reaches the disk, then SIGKILL
            buf = io.BytesIO(); real_save(obj, buf)
            with open(f, 'wb') as fh: fh.write(buf.getvalue()[: len(buf.getvalue()) // 2]); fh.flush(); os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *a, **k)
    torch.save = dying_save
    from pixelbert.trainer import pretrain_cli
    raise SystemExit(pretrain_cli())
''')


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(uninterrupted, tmp_path):
    out = tmp_path / 'killed'
    p = subprocess.run([sys.executable, script(KILL_DURING_SAVE, 'kill')] + cli_args(out), capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    # the half-written checkpoint-6 is a temporary folder, never listed; checkpoint-3 is intact and loads
    tmp = [d.name for d in out.iterdir() if d.name.startswith('.tmp-checkpoint-6')]
    assert tmp, list(out.iterdir())
    assert [c.name for c in list_checkpoints(out)] == ['checkpoint-3']
    assert load_training_state(out / 'checkpoint-3' / STATE_FILE)['step'] == 3
    from pixelbert.pretraining import PixelBertForPreTraining
    model = PixelBertForPreTraining.from_pretrained(out / 'checkpoint-3')
    load_model_weights(model, out / 'checkpoint-3')
    with pytest.raises(Exception): torch.load(out / tmp[0] / STATE_FILE, weights_only=True)  # truly half-written
    # resuming from it drops the log lines past step 3, cleans the temporary folder, and ends as if never killed
    run(out, resume=True)
    assert not any(d.name.startswith('.tmp-') for d in out.iterdir())
    assert_same_run(uninterrupted, out)


class RunsCode:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_checkpoint_that_runs_code_is_refused(uninterrupted, tmp_path):
    out, marker = tmp_path / 'evil', tmp_path / 'code-ran'
    out.mkdir()
    ckpt = out / f'checkpoint-{STEPS}'
    shutil.copytree(list_checkpoints(uninterrupted)[-1], ckpt)
    state = load_training_state(ckpt / STATE_FILE)
    state['extra'] = RunsCode(marker)
    torch.save(state, ckpt / STATE_FILE)
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'): load_training_state(ckpt / STATE_FILE)
    with pytest.raises(CliError, match='refusing to load'): pretrain_cli(**ARGS, out=str(out), resume=True)
    assert not marker.exists()
    # the same object in a plain torch.load would have run: the test's payload is real
    torch.load(ckpt / STATE_FILE, weights_only=False)
    assert marker.exists()


def test_no_silent_overwrite(uninterrupted):
    with pytest.raises(CliError, match='already holds checkpoints'): pretrain_cli(**ARGS, out=str(uninterrupted))
