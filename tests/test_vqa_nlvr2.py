"VQA and NLVR2 heads: shapes, a tiny overfit, results formats, out-of-vocabulary answers, too few answers, missing images."
import json
from pathlib import Path
import pytest
import torch
from pixelbert.metrics import normalize_answer, vqa_accuracy
from pixelbert.data import ImageLoadError, read_nlvr2, write_nlvr2
from pixelbert.model import PixelBertConfig
from pixelbert.processing import PixelBertImageProcessor, PixelBertProcessor, collate_vqa
from pixelbert.synth import NLVR2Sample, SynthNLVR2, SynthVQA, VQASample
from pixelbert.vqa import (AnswerVocab, PixelBertForVQA, VQACollator, answer_vocab_of, check_vqa_results,
                           evaluate_vqa, finetune_vqa, predict_vqa, save_vqa_results, vqa_config)
from pixelbert.nlvr2 import (NLVR2Collator, PixelBertForNLVR2, evaluate_nlvr2, nlvr2_metrics, nlvr2_sentence_key,
                             save_nlvr2_predictions)

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared CPU

@pytest.fixture(scope="module")
def proc():
    "The tiny processor with 64-pixel images (4x cheaper than the preset's 128; same code path)."
    p = PixelBertProcessor.from_preset("tiny")
    p.image_processor = PixelBertImageProcessor(shortest_edge=64, longest_edge=64, size_divisor=16)
    return p

@pytest.fixture(scope="module")
def cfg(proc):
    return PixelBertConfig.from_preset("tiny", vocab_size=len(proc.tokenizer), num_hidden_layers=2,
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

@pytest.fixture(scope="module")
def vqa_data():
    return SynthVQA("train", n_images=12, seed=0, image_size=64), SynthVQA("val", n_images=4, seed=0, image_size=64)

@pytest.fixture(scope="module")
def vocab(vqa_data):
    return AnswerVocab.build(a["answers"] for a in vqa_data[0].annotations())

def test_answer_vocab(tmp_path, vocab):
    v = AnswerVocab.build([["Two", "2", "two"] + ["yes"] * 7, ["no"] * 10], size=2)
    assert v.answers == ["no", "yes"] and v.counts == [10, 7]          # by count, '2' (3) cut at size=2
    assert AnswerVocab.load(v.save(tmp_path / "a.json")).answers == v.answers
    t = v.soft_target(["yes"] * 4 + ["banana"] * 6)                      # 'banana' has no column: dropped
    assert t.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="must be normalised"): AnswerVocab(["Yes"])
    with pytest.raises(ValueError, match="duplicate"): AnswerVocab(["yes", "yes"])
    with pytest.raises(FileNotFoundError, match="answer vocabulary not found"): AnswerVocab.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="'answers' list"): AnswerVocab.load(tmp_path / "bad.json")

def test_vqa_head_shapes_and_labels(proc, cfg, vqa_data, vocab):
    torch.manual_seed(0)
    model = PixelBertForVQA(vqa_config(cfg, vocab))
    samples = [vqa_data[0][i] for i in range(3)]
    batch = VQACollator(proc, vocab)(samples)
    out = model(**batch)
    assert out.logits.shape == (3, len(vocab)) and out.pooler_output.shape == (3, cfg.hidden_size)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and 0 <= out.accuracy <= 1
    # every answer starts at probability 1/K
    assert torch.allclose(torch.sigmoid(model.classifier.out.bias), torch.full((len(vocab),), 1 / len(vocab)))
    # the processing chapter's collate_vqa takes an AnswerVocab and builds the same soft targets
    other = collate_vqa(proc, vocab)(samples)
    assert torch.allclose(other["labels"], batch["labels"])
    model.eval()
    assert torch.allclose(model(**other).logits, model(**batch).logits)  # its extra keys (question_ids, ...) are ignored
    model.train()
    blind = VQACollator(proc, vocab, use_pixels=False)(samples)
    assert "pixel_values" not in blind and model(**blind).logits.shape == (3, len(vocab))
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "a parameter got no gradient"

def _overfit(model, batch, steps=25, lr=2e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        losses.append(loss.item())
    return losses

def test_vqa_overfits_a_tiny_batch(proc, cfg, vqa_data, vocab):
    torch.manual_seed(0)
    model = PixelBertForVQA(vqa_config(cfg, vocab))
    batch = VQACollator(proc, vocab)([vqa_data[0][i] for i in range(4)])
    losses = _overfit(model, batch)
    assert losses[-1] < 0.3 * losses[0], losses

def test_vqa_results_format_oov_and_few_answers(tmp_path, proc, cfg, vqa_data, vocab):
    torch.manual_seed(0)
    model = PixelBertForVQA(vqa_config(cfg, vocab))
    val = vqa_data[1]
    res = evaluate_vqa(model, val, proc, batch_size=5)
    anns = val.annotations()
    # 12 training images leave some validation answers out of the vocabulary: those questions are counted
    n_oov = sum(not any(normalize_answer(a) in vocab for a in q["answers"]) for q in anns)
    oracle = sum(vocab.soft_target(q["answers"]).max().item() for q in anns) / len(anns)
    assert (res["n"], res["n_oov"], res["n_skipped"]) == (len(val), n_oov, 0)
    assert res["oracle_accuracy"] == pytest.approx(oracle) and res["accuracy"] <= oracle
    assert set(res["per_type"]) == {q["question_type"] for q in anns}
    assert res["accuracy"] == pytest.approx(sum(vqa_accuracy(p["answer"], q["answers"]) for p, q in zip(res["predictions"], anns)) / len(anns))
    preds = res["predictions"]
    assert [p["question_id"] for p in preds] == [q["question_id"] for q in anns]
    assert all(set(p) == {"question_id", "answer"} and p["answer"] in vocab for p in preds)
    assert predict_vqa(model, val, proc, batch_size=7) == preds
    path = save_vqa_results(preds, tmp_path / "results.json")
    assert json.loads(path.read_text()) == preds
    with pytest.raises(ValueError, match="result 0: question_id must be an int"): check_vqa_results([{"question_id": 1.5, "answer": "x"}])
    with pytest.raises(ValueError, match="appears twice"): check_vqa_results(preds[:1] * 2)
    # an answer outside the vocabulary: a certain miss, counted
    img = val[0].image
    oov = evaluate_vqa(model, [val[0], VQASample(77, "x", img, "what is it?", ["banana"] * 10, "other")], proc)
    assert oov["n_oov"] == 1 and oov["per_type"]["other"] == 0.0 and oov["n"] == 2
    # fewer than 10 answers: an error naming the question, or skipped and counted
    few = VQASample(78, "x", img, "what is it?", ["yes"] * 9, "exists")
    with pytest.raises(ValueError, match="question 78 has 9 human answers, not 10"): evaluate_vqa(model, [val[0], few], proc)
    with pytest.raises(ValueError, match="question 78: a VQA question needs 10 human answers, got 9"): VQACollator(proc, vocab)([few])
    skipped = evaluate_vqa(model, [val[0], few], proc, on_few_answers="skip")
    assert (skipped["n"], skipped["n_skipped"], skipped["skipped_question_ids"]) == (1, 1, [78])
    assert evaluate_vqa(model, [few], proc, n_answers=None)["n"] == 1  # explicitly allowed

def test_vqa_missing_image_names_the_question(proc, vocab):
    s = VQASample(5, "x", "/nonexistent/COCO_val2014_000000000005.jpg", "what?", ["yes"] * 10)
    with pytest.raises(ImageLoadError, match="question 5: image file not found: /nonexistent/COCO_val2014"):
        VQACollator(proc, vocab)([s])

def test_finetune_vqa_through_the_trainer(tmp_path, proc, cfg, vqa_data, vocab):
    torch.manual_seed(0)
    model = PixelBertForVQA(vqa_config(cfg, vocab))
    res = finetune_vqa(model, vqa_data[0], proc, val_ds=vqa_data[1], out=str(tmp_path / "run"), steps=3, batch_size=4,
                       log_every=1, progress=False, save_every=100, device="cpu")
    assert res["train"]["step"] == 3 and [r["step"] for r in res["log"]] == [1, 2, 3]
    final = Path(res["train"]["final"])
    assert AnswerVocab.load(final / "answers.json").answers == vocab.answers
    back = PixelBertForVQA.from_pretrained(final)
    assert answer_vocab_of(back.config).answers == vocab.answers
    assert res["val"]["n"] == len(vqa_data[1])

@pytest.fixture(scope="module")
def nlvr2_data():
    return SynthNLVR2("train", n=6, seed=0, image_size=64)

def test_nlvr2_head_shapes_and_overfit(proc, cfg, nlvr2_data):
    torch.manual_seed(0)
    model = PixelBertForNLVR2(cfg)
    batch = NLVR2Collator(proc)([nlvr2_data[i] for i in range(4)])
    out = model(**batch)
    assert out.logits.shape == (4, 2) and out.pooler_output.shape == (4, 2, cfg.hidden_size)
    with pytest.raises(ValueError, match=r"\(batch, 2, 3, H, W\)"): model(batch["input_ids"], pixel_values=batch["pixel_values"][:, 0])
    losses = _overfit(model, batch)
    assert losses[-1] < 0.3 * losses[0], losses

def test_nlvr2_metrics_consistency():
    ids = ["dev-850-0-0", "dev-850-1-0", "dev-850-2-0", "dev-850-0-1", "test1-3-0-2"]
    m = nlvr2_metrics(ids, [True, True, False, True, False], [True, True, True, True, False])
    assert m == dict(accuracy=0.8, consistency=2 / 3, n=5, n_groups=3, predicted_true=0.6, majority_accuracy=0.8)
    constant = nlvr2_metrics(ids, [True] * 5, [True, True, True, True, False])  # one answer for every row
    assert constant["predicted_true"] == 1.0 and constant["accuracy"] == constant["majority_accuracy"] == 0.8
    assert nlvr2_sentence_key("train-10171-3-2") == "train-10171--2"
    assert nlvr2_sentence_key("val-4-0") == "val-4-0"  # not the official four fields: its own group
    assert nlvr2_sentence_key(SynthNLVR2("val", n=5).identifier(4)) == "dev-4--0"  # synthetic identifiers have the official form
    with pytest.raises(ValueError, match="lengths differ"): nlvr2_metrics(ids, [True], [True])

def test_nlvr2_missing_image_names_the_row(tmp_path, proc, cfg, nlvr2_data):
    # write synthetic rows in the official format, read them back, delete one image file
    rows = [NLVR2Sample(f"dev-{i}-0-0", nlvr2_data[i].images, nlvr2_data[i].sentence, nlvr2_data[i].label) for i in range(3)]
    jsonl = write_nlvr2(rows, tmp_path / "nlvr2", split="dev")
    samples = read_nlvr2(jsonl)
    torch.manual_seed(0)
    model = PixelBertForNLVR2(cfg)
    res = evaluate_nlvr2(model, samples, proc)
    assert res["n"] == 3 and res["n_groups"] == 3 and len(res["predictions"]) == 3
    assert "per_kind" not in res  # real NLVR2 rows carry no statement kind
    lines = save_nlvr2_predictions(res["predictions"], tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] in ("dev-0-0-0,True", "dev-0-0-0,False")
    Path(samples[1].images[1]).unlink()
    with pytest.raises(ImageLoadError, match=r"NLVR2 row 'dev-1-0-0': image file not found: .*dev-1-0-img1\.png"):
        evaluate_nlvr2(model, samples, proc)

def test_heads_start_from_a_saved_base_model(tmp_path, cfg, vocab):
    from pixelbert.model import PixelBertModel
    from pixelbert.vqa import vqa_labels
    torch.manual_seed(0)
    base = PixelBertModel(cfg)
    base.save_pretrained(tmp_path)
    vqa = PixelBertForVQA.from_pretrained(tmp_path, **vqa_labels(vocab))
    nlvr2 = PixelBertForNLVR2.from_pretrained(tmp_path)
    for m in (vqa, nlvr2):
        assert torch.equal(m.pixelbert.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)
    assert answer_vocab_of(vqa.config).answers == vocab.answers
