"""Model checks every preset passes (chapter 07): shapes, no NaN, gradients, save/load, masks, BERT parity, bad input.

`base` and `large` run with their real CNNs (ResNet-50, ResNeXt-101 64x4d; random init, no download) but a 2-layer
transformer and small images, so the whole file stays well under a minute on a CPU."""
import pytest, torch
from torch import nn
from transformers import BertConfig, BertModel, BertForPreTraining
from pixelbert.config import PixelBertConfig
from pixelbert.model import PixelBertModel, PixelBertModelOutput, PixelBertPreTrainedModel, BERT_FIELDS, count_parameters

PRESETS = ["tiny", "base", "large"]
SIZES = {"tiny": [(96, 128), (64, 96), (128, 64)], "base": [(128, 128), (64, 128), (128, 64)],
         "large": [(64, 128), (64, 64)]}  # (H, W), multiples of the token stride (tiny 16, base/large 64); large is slow


def preset_config(name, **kw):
    shrink = {} if name == "tiny" else dict(num_hidden_layers=2)
    return PixelBertConfig.from_preset(name, backbone_weights=None, **{**shrink, **kw})


@pytest.fixture(scope="module", params=PRESETS)
def preset(request):
    torch.manual_seed(0)
    cfg = preset_config(request.param)
    return request.param, cfg, PixelBertModel(cfg).eval()


def text_batch(texts):
    t = max(map(len, texts))
    ids = torch.tensor([s + [0] * (t - len(s)) for s in texts])
    return ids, (ids != 0).long()


def image_batch(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.randn(3, h, w, generator=g) for h, w in sizes]
    H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
    pv, pm = torch.zeros(len(imgs), 3, H, W), torch.zeros(len(imgs), H, W, dtype=torch.long)
    for i, im in enumerate(imgs): pv[i, :, :im.shape[1], :im.shape[2]], pm[i, :im.shape[1], :im.shape[2]] = im, 1
    return imgs, pv, pm


TEXTS = [[2, 17, 40, 41, 3], [2, 99, 3], [2, 5, 6, 7, 8, 3]]


def test_forward(preset):
    "Shapes, no NaN, fast path == explicit path, and padding is invisible: each pair alone == the pair in the batch."
    name, cfg, model = preset
    texts = TEXTS[:len(SIZES[name])]
    ids, am = text_batch(texts)
    imgs, pv, pm = image_batch(SIZES[name])
    b = len(texts)
    with torch.no_grad():
        out = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, output_attentions=True, output_hidden_states=True)
    assert isinstance(out, PixelBertModelOutput)
    stride = model.visual.stride
    y, x = pv.shape[-2] // stride, pv.shape[-1] // stride
    n, t = ids.shape[1] + y * x, ids.shape[1]
    assert out.pixel_grid == (y, x) and out.text_length == t
    assert out.last_hidden_state.shape == (b, n, cfg.hidden_size)
    assert out.pooler_output.shape == (b, cfg.hidden_size)
    assert out.pixel_mask.shape == (b, y * x) and out.pixel_index is None
    assert len(out.hidden_states) == cfg.num_hidden_layers + 1 and len(out.attentions) == cfg.num_hidden_layers
    assert out.attentions[0].shape == (b, cfg.num_attention_heads, n, n)
    for tensor in (out.last_hidden_state, out.pooler_output, *out.attentions):
        assert not tensor.isnan().any() and tensor.isfinite().all()
    # real pixel tokens per image = its own grid
    for i, (h, w) in enumerate(SIZES[name]): assert int(out.pixel_mask[i].sum()) == (h // stride) * (w // stride)
    # the fast (SDPA) path gives the same result as the explicit one
    with torch.no_grad(): fast = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
    torch.testing.assert_close(fast.last_hidden_state, out.last_hidden_state, atol=1e-5, rtol=0)
    assert fast.attentions is None and fast.hidden_states is None
    with torch.no_grad():
        for i, (im, s) in enumerate(zip(imgs, texts)):
            alone = model(torch.tensor([s]), pixel_values=im[None])
            y, x = alone.pixel_grid
            torch.testing.assert_close(out.last_hidden_state[i, :len(s)], alone.last_hidden_state[0, :len(s)], atol=1e-4, rtol=1e-4)
            pix_batch = out.last_hidden_state[i, t:].reshape(*out.pixel_grid, -1)[:y, :x]
            torch.testing.assert_close(pix_batch, alone.last_hidden_state[0, len(s):].reshape(y, x, -1), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.pooler_output[i], alone.pooler_output[0], atol=1e-4, rtol=1e-4)


def test_every_parameter_gets_a_gradient(preset):
    name, cfg, model = preset
    ids, am = text_batch(TEXTS[:2])
    _, pv, pm = image_batch(SIZES[name][:2] if name != "large" else [(64, 64), (64, 64)])
    model.train(); model.zero_grad()
    try:
        out = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
        g = torch.Generator().manual_seed(0)
        loss = (out.last_hidden_state * torch.randn(out.last_hidden_state.shape, generator=g)).sum() \
             + (out.pooler_output * torch.randn(out.pooler_output.shape, generator=g)).sum()
        loss.backward()
    finally: model.eval()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == [], f"{name}: parameters without gradient: {no_grad}"
    model.zero_grad(set_to_none=True)


def test_save_load_round_trip(preset, tmp_path):
    name, cfg, model = preset
    ids, am = text_batch(TEXTS[:1])
    _, pv, pm = image_batch(SIZES[name][-1:])
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    back = PixelBertModel.from_pretrained(tmp_path).eval()
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}
    assert strip(back.config.to_dict()) == strip(model.config.to_dict())
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd: assert torch.equal(sd[k], sd2[k]), k
    with torch.no_grad():
        a = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
        b = back(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
    # weights are bit-identical (above); oneDNN may pick another conv algorithm for the new module, hence a tolerance
    torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.pooler_output, a.pooler_output, atol=1e-5, rtol=0)


def bert_config(cfg, impl):
    return BertConfig(**{k: getattr(cfg, k) for k in BERT_FIELDS}, attn_implementation=impl)


@pytest.mark.parametrize("name", PRESETS)
def test_text_only_equals_bert(name):
    "Without pixel_values the model is BertModel: same weights (via from_bert), same outputs to 1e-5 in float32."
    cfg = preset_config(name, num_hidden_layers=12 if name == "base" else 2)  # base: the paper's full BERT-base
    torch.manual_seed(1)
    bert = BertModel(bert_config(cfg, "eager")).eval()
    model, info = PixelBertModel.from_bert(bert, config=cfg, output_loading_info=True)
    model.eval()
    assert info["unexpected_keys"] == [] and all(k.startswith("visual.") for k in info["missing_keys"])
    ids, am = text_batch([[101, 203, 200, 137, 321, 102], [101, 459, 102]])
    tt = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        ours = model(ids, attention_mask=am, token_type_ids=tt, output_attentions=True, output_hidden_states=True)
        fast = model(ids, attention_mask=am, token_type_ids=tt)
        for impl in ["eager", "sdpa"]:
            bert.config._attn_implementation = impl
            ref = bert(ids, attention_mask=am, token_type_ids=tt, output_hidden_states=True, output_attentions=impl == "eager")
            for o in (ours, fast):
                torch.testing.assert_close(o.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
                torch.testing.assert_close(o.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
            for a, b in zip(ours.hidden_states, ref.hidden_states): torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            if impl == "eager":
                for a, b in zip(ours.attentions, ref.attentions): torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert fast.pixel_mask is None and fast.pixel_grid is None and fast.text_length == ids.shape[1]


def test_from_bert_sources(tmp_path):
    "A directory written by BertModel.save_pretrained, a BERT task model, and the default-config path all load strictly."
    cfg = preset_config("tiny")
    torch.manual_seed(2)
    pre = BertForPreTraining(bert_config(cfg, "eager")).eval()
    pre.bert.save_pretrained(tmp_path / "bert")
    m1 = PixelBertModel.from_bert(pre, config=cfg)
    m2, info = PixelBertModel.from_bert(tmp_path / "bert", config=cfg, output_loading_info=True)
    assert info["missing_in_checkpoint"] == [] and info["unexpected_keys"] == []
    # default config: the base preset with BERT's transformer fields (CNN swapped for a tiny one to stay offline and fast)
    m3 = PixelBertModel.from_bert(str(tmp_path / "bert"), backbone="tiny_cnn", backbone_weights=None, freeze_backbone_bn=False)
    assert (m3.config.hidden_size, m3.config.vocab_size, m3.config.num_hidden_layers) == (cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers)
    for m in (m2, m3):
        for k, v in m1.state_dict().items():
            if not k.startswith("visual."): assert torch.equal(v, m.state_dict()[k]), k
    with pytest.raises(ValueError, match="num_attention_heads"):
        PixelBertModel.from_bert(pre, config=preset_config("tiny", num_attention_heads=2))
    with pytest.raises(TypeError, match="expects a BertModel"): PixelBertModel.from_bert(nn.Linear(2, 2))


def test_from_pretrained_does_not_fetch_imagenet_weights(tmp_path):
    "A checkpoint whose config names ImageNet weights loads offline: the trained CNN comes from the checkpoint."
    cfg = PixelBertConfig.from_preset("tiny", backbone="resnet18", backbone_weights=None, freeze_backbone_bn=True)
    model = PixelBertModel(cfg).eval()
    model.config.backbone_weights = "IMAGENET1K_V1"  # as a model trained from ImageNet weights would say
    model.save_pretrained(tmp_path)
    back = PixelBertModel.from_pretrained(tmp_path).eval()
    assert back.config.backbone_weights == "IMAGENET1K_V1"
    for k, v in model.state_dict().items(): assert torch.equal(v, back.state_dict()[k]), k


def test_image_embeds_cache_and_sampling():
    torch.manual_seed(3)
    cfg = preset_config("tiny")
    model = PixelBertModel(cfg).eval()
    ids, am = text_batch(TEXTS)
    _, pv, pm = image_batch(SIZES["tiny"])
    with torch.no_grad():
        full = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
        vis = model.encode_image(pv, pm)
        cached = model(ids, attention_mask=am, image_embeds=vis.features, image_mask=vis.mask, image_grid=vis.grid)
        assert torch.equal(full.last_hidden_state, cached.last_hidden_state) and cached.pixel_grid == full.pixel_grid
        g = lambda: torch.Generator().manual_seed(0)
        s1 = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, num_sampled_pixels=5, generator=g())
        s2 = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, num_sampled_pixels=5, generator=g())
        assert s1.last_hidden_state.shape == (3, ids.shape[1] + 5, cfg.hidden_size)
        assert torch.equal(s1.pixel_index, s2.pixel_index) and torch.equal(s1.last_hidden_state, s2.last_hidden_state)
        assert full.pixel_mask.gather(1, s1.pixel_index).bool().all()  # only real pixels are sampled
        # more samples than real pixels: the extra slots are masked out
        many = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, num_sampled_pixels=100, generator=g())
        assert many.pixel_mask.sum(1).tolist() == full.pixel_mask.sum(1).tolist()
        assert not many.last_hidden_state.isnan().any()
        as_tuple = model(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, return_dict=False)
        assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], full.last_hidden_state)


def test_autocast_and_gradient_checkpointing():
    torch.manual_seed(4)
    cfg = preset_config("tiny")
    model = PixelBertModel(cfg)
    ids, am = text_batch(TEXTS)
    _, pv, pm = image_batch(SIZES["tiny"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for attn in (False, True):
            out = model.eval()(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm, output_attentions=attn)
            assert out.last_hidden_state.isfinite().all()
    def grads():
        model.zero_grad(); torch.manual_seed(5)
        out = model.train()(ids, attention_mask=am, pixel_values=pv, pixel_mask=pm)
        (out.last_hidden_state * torch.linspace(-1, 1, cfg.hidden_size)).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    plain = grads()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable  # v5 / v4 name
    enable()
    assert model.encoder.gradient_checkpointing
    ckpt = grads()
    (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    assert not model.encoder.gradient_checkpointing
    assert ckpt.keys() == plain.keys() and len(plain) > 0
    for n in plain: torch.testing.assert_close(ckpt[n], plain[n], atol=1e-5, rtol=1e-4)


def test_init_weights_like_bert():
    cfg = preset_config("tiny", initializer_range=0.02)
    torch.manual_seed(6)
    model = PixelBertModel(cfg)
    assert isinstance(model, PixelBertPreTrainedModel) and model.base_model_prefix == "pixelbert"
    w = model.encoder.layer[0].attention.self.query.weight
    assert abs(w.std().item() - 0.02) < 0.003 and model.encoder.layer[0].attention.self.query.bias.abs().max() == 0
    assert model.embeddings.word_embeddings.weight[cfg.pad_token_id].abs().max() == 0
    assert torch.equal(model.embeddings.LayerNorm.weight, torch.ones(cfg.hidden_size))


BAD = [
    ("grey-scale image", dict(pixel_values=torch.randn(2, 1, 64, 64)), "channels"),
    ("3-D pixel_values", dict(pixel_values=torch.randn(3, 64, 64)), "4-D"),
    ("5-D pixel_values", dict(pixel_values=torch.randn(2, 1, 3, 64, 64)), "4-D"),
    ("batch sizes differ", dict(pixel_values=torch.randn(3, 3, 64, 64)), "batch sizes differ"),
    ("pixel_mask without pixels", dict(pixel_mask=torch.ones(2, 64, 64)), "without pixel_values"),
    ("pixel_mask of another size", dict(pixel_values=torch.randn(2, 3, 64, 64), pixel_mask=torch.ones(2, 32, 64)), "pixel_mask"),
    ("integer pixels", dict(pixel_values=torch.zeros(2, 3, 64, 64, dtype=torch.uint8)), "floating point"),
    ("both pixels and cached embeddings", dict(pixel_values=torch.randn(2, 3, 64, 64), image_embeds=torch.randn(2, 4, 128)), "not both"),
    ("cached embeddings of another width", dict(image_embeds=torch.randn(2, 4, 64)), "hidden_size"),
    ("cached embeddings of another batch", dict(image_embeds=torch.randn(3, 4, 128)), "batch sizes differ"),
    ("attention_mask of another shape", dict(attention_mask=torch.ones(2, 3)), "attention_mask"),
    ("bad num_sampled_pixels", dict(pixel_values=torch.randn(2, 3, 64, 64), num_sampled_pixels=0), "num_sampled_pixels"),
]


@pytest.mark.parametrize("what,kw,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input(what, kw, msg):
    model = PixelBertModel(preset_config("tiny")).eval()
    ids = torch.tensor([[2, 17, 40, 41, 3], [2, 99, 3, 0, 0]])
    with pytest.raises(ValueError, match=msg): model(ids, **kw)


def test_bad_text():
    cfg = preset_config("tiny")
    model = PixelBertModel(cfg).eval()
    with pytest.raises(ValueError, match="position table"): model(torch.ones(1, cfg.max_position_embeddings + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"): model(torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(0, 4, dtype=torch.long), pixel_values=torch.randn(0, 3, 64, 64))
    with pytest.raises(ValueError, match="token ids must lie"): model(torch.tensor([[2, cfg.vocab_size]]))
    with pytest.raises(ValueError, match="input_ids is required"): model(pixel_values=torch.randn(1, 3, 64, 64))
    # the length limit is the position table, with or without an image
    t = cfg.max_position_embeddings
    out = model(torch.ones(1, t, dtype=torch.long), pixel_values=torch.randn(1, 3, 64, 64))
    assert out.text_length == t


def test_parameter_counts():
    counts = {name: count_parameters(PixelBertConfig.from_preset(name)) for name in PRESETS}
    assert counts["tiny"]["total"] < 2
    assert counts["base"]["cnn_backbone"] == 23.51  # torchvision ResNet-50 minus its classifier
    assert round(counts["base"]["text_embeddings"] + counts["base"]["transformer"] + counts["base"]["pooler"], 1) == 109.5  # BERT-base
    assert counts["large"]["transformer"] == counts["base"]["transformer"] and counts["large"]["visual"] > counts["base"]["visual"]
