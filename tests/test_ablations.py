"The ablation variants train what they say (quick sizes: the pipeline, not the figures; those come from scripts/ablations.py)."
import json
from pixelbert.ablations import ABLATIONS, run_ablation, ablation_table
from pixelbert.trainer import read_log


def test_no_pretraining_and_itm_only(tmp_path):
    none = run_ablation('none', tmp_path/'none', quick=True, precision='fp32')
    assert not (tmp_path/'none'/'pretrain').exists()  # nothing pre-trained: the start model, tag-trained CNN
    assert (tmp_path/'none'/'backbone'/'backbone.safetensors').is_file()
    itm = run_ablation('itm', tmp_path/'itm', quick=True, precision='fp32')
    keys = set().union(*read_log(tmp_path/'itm'/'pretrain'/'log.jsonl'))
    assert 'itm_loss' in keys and 'mlm_loss' not in keys  # ITM alone: MLM never trained
    for r in (none, itm):
        assert set(r) >= {'pretrain', 'vqa', 'nlvr2', 'retrieval', 'grounding', 'seconds'}
        assert json.loads((tmp_path/r['variant']/'result.json').read_text())['label'] == ABLATIONS[r['variant']][0]
    table = ablation_table({'none': none, 'itm': itm})
    assert table.count('\n') == 3 and '| no pre-training |' in table and '| ITM only |' in table
    # scripts/ablations.py --rerun-retrieval redoes only the retrieval stage, from the saved models ('none': the start model)
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location('ablations_script', Path(__file__).parents[1]/'scripts'/'ablations.py')
    script = importlib.util.module_from_spec(spec); spec.loader.exec_module(script)
    script.main(['--out', str(tmp_path), '--variants', 'none,itm', '--quick', '--rerun-retrieval'])
    for r in (none, itm):
        again = json.loads((tmp_path/r['variant']/'result.json').read_text())
        assert again['retrieval_rerun'] and {k: v for k, v in again.items() if k not in ('retrieval', 'stages', 'retrieval_rerun')} \
            == {k: v for k, v in r.items() if k not in ('retrieval', 'stages')}
