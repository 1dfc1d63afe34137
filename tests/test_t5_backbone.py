"""The FLAN-T5 text backbone on a small random T5 folder: exact states, masks, truncation, caching, errors."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from contracts.errors import ConfigError
from core.model import text_backbone as tb
from core.model.t5_backbone import FlanT5Backbone
from published.t5_standin import write_t5_folder

TEXTS = ["birds sing in the trees", "rain", "the sound of seagulls cry over the harbour and boats creak loudly"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_t5_folder(tmp_path_factory.mktemp("flan-t5") / "small")


@pytest.fixture(scope="module")
def reference(folder):
    from transformers import AutoTokenizer, T5EncoderModel

    return AutoTokenizer.from_pretrained(folder), T5EncoderModel.from_pretrained(folder).eval()


def _copy(folder, tmp_path, name="copy"):
    return shutil.copytree(folder, tmp_path / name)


def test_states_are_the_encoders_last_hidden_state_on_the_unpadded_tokens(folder, reference):
    tokenizer, model = reference
    bb = FlanT5Backbone(folder, cache_dir="")
    assert bb.width == 32 and bb.name == "flan-t5"
    assert all(not p.requires_grad for p in bb.model.parameters()) and not bb.model.training
    states, pad = bb.encode(TEXTS)
    assert states.dtype == torch.float32 and states.shape[2] == 32
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            tok = tokenizer(text, return_tensors="pt")
            ref = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state[0]
            n = ref.shape[0]
            assert int((~pad[i]).sum()) == n and not pad[i, :n].any()
            torch.testing.assert_close(states[i, :n], ref, atol=1e-5, rtol=1e-5)
            assert torch.all(states[i, n:] == 0)
        # the authors' way: the whole batch padded to the longest, attention mask in
        tok = tokenizer(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt")
        batch = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    assert torch.equal(~pad, tok["attention_mask"].bool())
    torch.testing.assert_close(states[~pad], batch[~pad], atol=1e-5, rtol=1e-5)


def test_tokens_are_the_sentencepiece_pieces_in_state_order(folder):
    bb = FlanT5Backbone(folder, cache_dir="")
    pieces = bb.tokens(TEXTS[0])
    assert pieces[-1] == "</s>" and pieces[0].startswith("\u2581")
    assert len(pieces) == int((~bb.encode([TEXTS[0]])[1]).sum())
    assert bb.tokenizer.convert_tokens_to_string(pieces[:-1]) == TEXTS[0]


def test_truncation_at_max_tokens_keeps_the_closing_eos(folder, reference):
    tokenizer, model = reference
    bb = FlanT5Backbone(folder, max_tokens=8, cache_dir="")
    states, pad = bb.encode([TEXTS[2], TEXTS[1]])
    assert states.shape[1] == 8 and not pad[0].any() and pad[1].sum() == 8 - len(bb.tokens(TEXTS[1]))
    pieces = bb.tokens(TEXTS[2])
    assert len(pieces) == 8 and pieces[-1] == "</s>"
    tok = tokenizer(TEXTS[2], truncation=True, max_length=8, return_tensors="pt")
    with torch.no_grad():
        ref = model(**tok).last_hidden_state[0]
    torch.testing.assert_close(states[0], ref, atol=1e-5, rtol=1e-5)


def test_states_do_not_depend_on_the_batch(folder):
    alone = FlanT5Backbone(folder, cache_dir="").encode([TEXTS[1]])[0][0]
    mixed = FlanT5Backbone(folder, cache_dir="", batch_size=2).encode(list(reversed(TEXTS)))[0][1]
    torch.testing.assert_close(mixed[: alone.shape[0]], alone, atol=1e-5, rtol=1e-5)


def test_cache_in_memory_and_on_disk_returns_the_same_numbers(folder, tmp_path):
    first = FlanT5Backbone(folder, cache_dir=tmp_path)
    a, pad_a = first.encode(TEXTS)
    b, _ = first.encode(TEXTS)
    assert torch.equal(a, b) and TEXTS[0] in first._cache
    assert first._cache[TEXTS[0]].dtype.name == "float32"
    pages = list(tmp_path.rglob("page-*.npz"))
    assert len(pages) == 1 and pages[0].parent.name == first.fingerprint.replace(":", "-")
    second = FlanT5Backbone(folder, cache_dir=tmp_path)
    second._run = None  # a cache hit must not run the encoder
    c, pad_c = second.encode(TEXTS)
    assert torch.equal(a, c) and torch.equal(pad_a, pad_c)


def test_fingerprint_follows_the_weights_and_max_tokens(folder, tmp_path):
    fp = FlanT5Backbone(folder, cache_dir="").fingerprint
    assert fp.startswith("flan-t5:") and len(fp) == len("flan-t5:") + 16
    assert FlanT5Backbone(folder, cache_dir="").fingerprint == fp
    assert FlanT5Backbone(folder, max_tokens=8, cache_dir="").fingerprint != fp
    other = write_t5_folder(tmp_path / "seed1", seed=1)
    assert FlanT5Backbone(other, cache_dir="").fingerprint != fp


def test_get_text_backbone_shares_one_instance_per_name_tokens_and_folder(folder, monkeypatch):
    monkeypatch.setattr(tb, "_LOADED", {})
    monkeypatch.chdir(folder.parent)
    one = tb.get_text_backbone("flan-t5", 16, str(folder), expected_width=32)
    assert isinstance(one, FlanT5Backbone) and one.max_tokens == 16
    assert tb.get_text_backbone("flan-t5", 16, folder.name) is one  # relative spelling, same folder
    assert tb.get_text_backbone("flan-t5", 24, folder) is not one
    with pytest.raises(ConfigError, match="is 32 wide; this model's text query map expects 1024"):
        tb.get_text_backbone("flan-t5", 16, folder, expected_width=1024)
    with pytest.raises(ConfigError, match="needs a local folder: text.path / --text-encoder DIR"):
        tb.get_text_backbone("flan-t5", 16)
    with pytest.raises(ConfigError, match="loads from its package"):
        tb.get_text_backbone("minilm-l6", 16, folder)
    with pytest.raises(ConfigError, match="unknown text backbone"):
        tb.get_text_backbone("bert-huge", 16)


def test_old_two_argument_call_still_gives_minilm(monkeypatch):
    monkeypatch.setattr(tb, "_LOADED", {})
    bb = tb.get_text_backbone("minilm-l6", 16)
    assert isinstance(bb, tb.MiniLMBackbone) and bb.width == 384 and bb.fingerprint.startswith("minilm-l6:")
    assert tb.get_text_backbone("minilm-l6", 16, "", expected_width=384) is bb
    with pytest.raises(ConfigError, match="text backbone minilm-l6 is 384 wide"):
        tb.get_text_backbone("minilm-l6", 16, expected_width=1024)


def _broken(folder, tmp_path, how):
    copy = _copy(folder, tmp_path)
    if how == "no config":
        (copy / "config.json").unlink()
    elif how == "no weights":
        (copy / "model.safetensors").unlink()
    elif how == "no tokenizer":
        (copy / "tokenizer.json").unlink()
        (copy / "spiece.model").unlink()
    elif how == "not t5":
        cfg = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps(dict(cfg, model_type="bert")))
    elif how == "bad json":
        (copy / "config.json").write_text("{not json")
    elif how == "corrupt weights":
        (copy / "model.safetensors").write_bytes(b"garbage" * 10)
    elif how == "wrong shapes":
        cfg = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps(dict(cfg, d_ff=48)))
    elif how == "missing tensors":
        from safetensors.torch import load_file, save_file

        sd = load_file(copy / "model.safetensors")
        save_file({k: v for k, v in sd.items() if "block.1." not in k}, copy / "model.safetensors",
                  metadata={"format": "pt"})
    elif how == "small vocab":
        cfg = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps(dict(cfg, vocab_size=16)))
    return copy


@pytest.mark.parametrize("how, message", [
    ("no config", "has no config.json"),
    ("no weights", r"has no weights \(\*.safetensors or \*.bin\)"),
    ("no tokenizer", r"has no tokenizer \(tokenizer.json or spiece.model\)"),
    ("not t5", "holds a 'bert' model"),
    ("bad json", "config.json does not read"),
    ("corrupt weights", "the weights do not load"),
    ("wrong shapes", "the weights do not load"),
    ("missing tensors", "the weights lack 9 encoder tensors"),
    ("small vocab", "the tokenizer has .* tokens but the model only 16 embeddings"),
])
def test_bad_folders_are_one_line_config_errors_naming_the_folder(folder, tmp_path, how, message):
    copy = _broken(folder, tmp_path, how)
    with pytest.raises(ConfigError, match=message) as err:
        FlanT5Backbone(copy, cache_dir="")
    text = str(err.value)
    assert "\n" not in text and str(copy.resolve()) in text


def test_missing_folder_empty_path_and_width_errors(folder, tmp_path):
    with pytest.raises(ConfigError, match="needs a local folder: text.path / --text-encoder DIR"):
        FlanT5Backbone("", cache_dir="")
    with pytest.raises(ConfigError, match=re.escape(f"FLAN-T5 folder {tmp_path / 'nowhere'} does not exist")):
        FlanT5Backbone(tmp_path / "nowhere", cache_dir="")
    wide = f"FLAN-T5 folder {folder} is 32 wide; this model's text query map expects 1024"
    with pytest.raises(ConfigError, match=re.escape(wide)):
        FlanT5Backbone(folder, cache_dir="", expected_width=1024)
