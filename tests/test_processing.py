"Processing (chapter 3) beyond the notebook: bad images, padding and masks, save/load round trips, VQA soft targets."
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pixelbert.config import PixelBertConfig
from pixelbert.processing import (SPECIAL_TOKENS, PixelBertImageProcessor, PixelBertProcessor, collate_nlvr2,
                                  collate_pairs, collate_vqa, load_tokenizer, resized_size, synthetic_tokenizer)
from pixelbert.synth import CaptionSample, NLVR2Sample, VQASample


@pytest.fixture(scope="module")
def proc():
    return PixelBertProcessor.from_preset("tiny")


def _image(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# -- images smaller than the stride ------------------------------------------------------------------------------

def test_image_smaller_than_stride_without_resize_is_refused():
    ip = PixelBertImageProcessor(size_divisor=16, do_resize=False)
    with pytest.raises(ValueError, match=r"image 1 is 8x40 pixels .*smaller than size_divisor=16"):
        ip([_image(32, 32), _image(8, 40)])


def test_extreme_aspect_ratio_is_refused_with_index_and_sizes():
    ip = PixelBertImageProcessor()  # paper sizes, divisor 64
    with pytest.raises(ValueError, match=r"image 2 is 20x3000 pixels \(height x width\), resized to 9x1333"):
        ip([_image(100, 100), _image(60, 80), _image(20, 3000)])


def test_small_image_is_upscaled_not_refused():
    out = PixelBertImageProcessor.for_config(PixelBertConfig.from_preset("tiny"))([_image(4, 4)])
    assert out["pixel_values"].shape == (1, 3, 128, 128)
    assert out["pixel_mask"].sum() == 128 * 128


# -- padding and masks ----------------------------------------------------------------------------------------------

def test_batch_of_different_sizes_pads_and_masks():
    ip = PixelBertImageProcessor(shortest_edge=40, longest_edge=70, size_divisor=16)
    ims = [_image(50, 30, 0), _image(20, 60, 1), _image(45, 45, 2)]
    sizes = [resized_size(im.height, im.width, 40, 70) for im in ims]
    assert sizes == [(67, 40), (23, 70), (40, 40)]
    out = ip(ims)
    pv, pm = out["pixel_values"], out["pixel_mask"]
    assert pv.shape == (3, 3, 80, 80) and pv.dtype == torch.float32   # 67 -> 80, 70 -> 80
    assert pm.shape == (3, 80, 80) and pm.dtype == torch.long
    for i, (h, w) in enumerate(sizes):
        expect = torch.zeros(80, 80, dtype=torch.long)
        expect[:h, :w] = 1
        assert torch.equal(pm[i], expect)
        alone = ip([ims[i]])["pixel_values"][0]                    # the same image processed on its own
        assert torch.allclose(pv[i, :, :h, :w], alone[:, :h, :w])
        assert pv[i][:, pm[i] == 0].abs().max() == 0               # padding is exactly 0


def test_inputs_of_every_kind_agree():
    ip = PixelBertImageProcessor(shortest_edge=32, longest_edge=64, size_divisor=16)
    im = _image(30, 50)
    arr = np.array(im)
    ref = ip(im)["pixel_values"]
    for x in (arr, torch.from_numpy(arr).permute(2, 0, 1), torch.from_numpy(arr).permute(2, 0, 1).float() / 255):
        assert torch.allclose(ip(x)["pixel_values"], ref, atol=1e-6)


def test_bad_image_values_are_refused():
    ip = PixelBertImageProcessor()
    with pytest.raises(ValueError, match=r"image 0: float pixel values must lie in \[0, 1\]"):
        ip(torch.randn(3, 100, 100))
    with pytest.raises(ValueError, match="image 0: expected"):
        ip(np.zeros((100, 100, 2), np.uint8))
    with pytest.raises(ValueError, match="image 0: image file not found"):
        ip("/no/such/file.png")


def test_for_config_matches_the_visual_encoders_down_sampling():
    visual = pytest.importorskip("pixelbert.visual")
    for preset in ("tiny", "base"):
        config = PixelBertConfig.from_preset(preset)
        stride = visual.build_backbone(config.backbone).stride * config.pool_size
        assert PixelBertImageProcessor.for_config(config).size_divisor == stride


# -- tokenizer ------------------------------------------------------------------------------------------------------

def test_synthetic_tokenizer_layout():
    tok = synthetic_tokenizer()
    assert tok.convert_ids_to_tokens(list(range(5))) == SPECIAL_TOKENS
    assert len(tok) <= PixelBertConfig.from_preset("tiny").vocab_size
    assert tok.tokenize("A RED Circle") == ["a", "red", "circle"]   # lower-cased like bert-base-uncased


def test_tokenizer_save_load_round_trip_by_path(tmp_path):
    tok = synthetic_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert back.get_vocab() == tok.get_vocab()
    text = ["a big blue triangle left of two circles", "zebra?"]
    assert back(text)["input_ids"] == tok(text)["input_ids"]
    assert load_tokenizer(str(tmp_path / "tok")).get_vocab() == tok.get_vocab()   # str path too


def test_load_tokenizer_from_a_bert_style_vocab_txt(tmp_path):
    # the layout of a classic BERT checkpoint: vocab.txt only, [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += ["a", "red", "circle", "re", "##d", "##s"]
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    tok = load_tokenizer(tmp_path)
    assert (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.unk_token_id) == (101, 102, 103, 100)
    assert tok("A red circles")["input_ids"] == [101, 104, 105, 106, 109, 102]


def test_load_tokenizer_refuses_what_transformers_would_return_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no vocabulary"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(OSError, match="not in the local Hugging Face cache"):
        load_tokenizer("pixelbert-tests/no-such-tokenizer", local_files_only=True)


def test_base_preset_needs_the_cached_bert_tokenizer():
    try:
        p = PixelBertProcessor.from_preset("base", local_files_only=True)
    except OSError as e:
        assert "'bert-base-uncased'" in str(e)
    else:  # cached on this machine: then it must be the real vocabulary
        assert len(p.tokenizer) == 30522 and p.image_processor.size_divisor == 64


# -- processor ------------------------------------------------------------------------------------------------------

def test_processor_save_load(tmp_path, proc):
    proc.save_pretrained(tmp_path)
    back = PixelBertProcessor.from_pretrained(tmp_path)
    assert back.image_processor.to_dict() == proc.image_processor.to_dict()
    assert back.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert back.tokenizer.model_max_length == proc.tokenizer.model_max_length == 64
    ims, text = [_image(100, 140), _image(128, 90, 1)], ["a red circle", "two small squares"]
    a, b = proc(images=ims, text=text), back(images=ims, text=text)
    assert set(a) == set(b) == {"input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask"}
    for k in a: assert torch.equal(a[k], b[k])
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        PixelBertImageProcessor.from_pretrained(tmp_path / "nothing")


# -- collate functions ------------------------------------------------------------------------------------------------

def _vqa(qid, answers, qtype="other"):
    return VQASample(qid, f"img{qid}", _image(64, 64, qid), "what colour is it?", answers, qtype)


def test_vqa_soft_scores_hand_checked(proc):
    vocab = {"red": 0, "blue": 1, "green": 2, "2": 3, "yes": 4}
    samples = [_vqa(1, ["red"] * 5 + ["blue"] * 3 + ["green"] * 1 + ["pink"]),   # 5 -> 1, 3 -> 0.9, 1 -> 0.3
               _vqa(2, ["blue"] * 2 + ["green"] * 8),                                # 2 -> 0.6, 8 -> 1
               _vqa(3, ["two", "2", "Two."] + ["yes"] * 7),                          # normalised: "2" x3 -> 0.9
               _vqa(4, ["purple"] * 10)]                                             # out of the vocabulary: no target
    batch = collate_vqa(proc, vocab)(samples)
    expect = torch.tensor([[1.0, 0.9, 0.3, 0, 0], [0, 0.6, 1.0, 0, 0], [0, 0, 0, 0.9, 1.0], [0, 0, 0, 0, 0]])
    assert torch.allclose(batch["labels"], expect, atol=1e-6)
    # 0.6 by hand: leaving out one of the 2 "blue" leaves 1 match (1/3), leaving out a "green" leaves 2 (2/3)
    assert abs((2 * (1 / 3) + 8 * (2 / 3)) / 10 - 0.6) < 1e-9
    assert batch["question_ids"].tolist() == [1, 2, 3, 4]
    assert batch["pixel_values"].shape == (4, 3, 128, 128)
    with pytest.raises(ValueError, match="question 5"):
        collate_vqa(proc, vocab)([_vqa(5, ["red"] * 9)])   # VQA v2 has 10 answers per question


def test_pairs_with_negatives_and_paths(tmp_path, proc):
    _image(90, 120).save(tmp_path / "a.png")
    samples = [CaptionSample("a", tmp_path / "a.png", "a red circle", negatives=["a blue circle", "a red square"]),
               CaptionSample("b", _image(128, 128, 1), "two squares", negatives=["three squares"])]
    batch = collate_pairs(proc)(samples)
    assert batch["neg_input_ids"].shape == batch["input_ids"].shape == batch["neg_attention_mask"].shape
    assert proc.decode(batch["neg_input_ids"][1], skip_special_tokens=True) == "three squares"
    assert batch["pixel_mask"][0].sum() == 96 * 128                      # 90x120 -> 96x128
    assert torch.equal(collate_pairs(proc)(samples)["neg_input_ids"], batch["neg_input_ids"])
    with pytest.raises(ValueError, match=r"image 0: image file not found: .*missing.png"):
        collate_pairs(proc)([CaptionSample("m", tmp_path / "missing.png", "a circle")])


def test_collate_functions_pickle(proc):
    # DataLoader workers started with spawn/forkserver receive the collate_fn by pickling
    samples = [NLVR2Sample("n0", (_image(64, 64), _image(64, 96, 1)), "both images have a circle", "True"),
               NLVR2Sample("n1", (_image(80, 64, 2), _image(64, 64, 3)), "the left image has a square", False)]
    fn = pickle.loads(pickle.dumps(collate_nlvr2(proc)))
    batch = fn(samples)
    assert batch["pixel_values"].shape == (2, 2, 3, 128, 128) and batch["pixel_mask"].shape == (2, 2, 128, 128)
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert batch["pixel_mask"][0, 1].sum() == 85 * 128                   # 64x96 -> 85x128
    pickle.dumps(collate_pairs(proc)); pickle.dumps(collate_vqa(proc, {"yes": 0}))
    with pytest.raises(ValueError, match="'n2'"):
        fn([NLVR2Sample("n2", (_image(64, 64), _image(64, 64)), "s", "yes")])
