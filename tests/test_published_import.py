"""Importing the authors' checkpoints: a file in their exact format (random values, ``published.standin``) goes
through ``sat2sound import``, and every tower of the result is compared with references this import path did not
write: ``torch.nn.TransformerEncoder`` for the fusion (inside ``published.reference``), ``transformers``' T5 encoder
for the text, and the authors' architecture re-read from their code (``published.reference``) for the rest."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest
import torch

from contracts.errors import CheckpointError, ConfigError
from core.checkpoint import load_checkpoint, read_manifest
from core.cli import main
from core.config import get_preset
from published.importer import import_checkpoint
from published.keymap import MAPPING_VERSION
from published.reference import AuthorsSat2Sound, AuthorsSizes
from published.standin import write_standin
from published.t5_standin import write_t5_folder

ROOT = Path(__file__).resolve().parents[1]
SIZES = AuthorsSizes.tiny()
TOL = 2e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    ckpt = write_standin(root / "bingmap_withmeta.ckpt", SIZES, "bingmap", seed=3)
    t5 = write_t5_folder(root / "flan-t5-tiny", d_model=SIZES.text_width, layers=2, heads=2, d_ff=48)
    return ckpt, t5, root


@pytest.fixture(scope="module")
def imported(files):
    ckpt, t5, root = files
    report = import_checkpoint(ckpt, t5, root / "imported", base=get_preset("published-tiny"))
    return report, load_checkpoint(root / "imported")


@pytest.fixture(scope="module")
def reference(files):
    """The authors' model, loaded by its own key names straight from the file (no mapping involved)."""
    ref = AuthorsSat2Sound(SIZES)
    ref.load_state_dict(torch.load(files[0], weights_only=True, mmap=True)["state_dict"], strict=True)
    return ref.eval()


def _inputs(cfg, seed: int = 0, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    s = cfg.image.image_size
    raw = {"lat": torch.tensor([41.5, -33.9, 64.1][:batch]), "lon": torch.tensor([-93.6, 151.2, -21.9][:batch]),
           "month": torch.tensor([5.0, 11.0, 1.0][:batch]), "hour": torch.tensor([13.0, 22.0, 0.0][:batch]),
           "audio_source": torch.tensor([0, 2, 3][:batch]), "caption_source": torch.tensor([0, 1, 2][:batch])}
    return {
        "image": torch.randn(batch, 3, s, s, generator=g),
        "zoom": torch.tensor([1.0, 3.0, 5.0][:batch]),
        "raw_meta": raw,
        "mel": torch.randn(batch, cfg.audio.n_frames, cfg.audio.n_mels, generator=g) * 15.0 - 20.0,
        "texts": ["we hear birds sing in the trees", "waves crash on a sandy beach far away and wind",
                  "cars"][:batch],
    }


def _ours_meta(raw: dict, valid: torch.Tensor) -> dict:
    return {**{k: v.float() for k, v in raw.items()}, "meta_mask": valid.float()}


def _t5_states(t5_dir: Path, texts: list[str]):
    """Reference text states: transformers' own T5 encoder and tokenizer, the authors' way (pad to longest)."""
    from transformers import AutoTokenizer, T5EncoderModel

    tok = AutoTokenizer.from_pretrained(t5_dir, local_files_only=True)
    enc = T5EncoderModel.from_pretrained(t5_dir, local_files_only=True).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        states = enc(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return states, batch["attention_mask"]


def _embeddings(model, x, valid=None) -> dict[str, torch.Tensor]:
    valid = torch.ones(len(x["image"]), 5) if valid is None else valid
    gsd = torch.full((len(x["image"]),), 0.6)
    with torch.no_grad():
        return {"image": model.encode_image(x["image"], x["zoom"], gsd, _ours_meta(x["raw_meta"], valid)).embedding,
                "audio": model.encode_audio(x["mel"]).embedding,
                "text": model.encode_text(x["texts"]).embedding}


@pytest.fixture(scope="module")
def reference_embeddings(files, reference, imported):
    x = _inputs(imported[1].cfg)
    states, mask = _t5_states(files[1], x["texts"])
    return {"image": reference.encode_image(x["image"], x["zoom"], "bingmap", x["raw_meta"]),
            "audio": reference.encode_audio(x["mel"]),
            "text": reference.encode_text(states, mask)}


def _gap(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ------------------------------------------------------------------------------------------------ coverage


def test_every_key_is_mapped_checked_or_dropped_and_every_tensor_filled(files, imported):
    report, loaded = imported
    state = torch.load(files[0], weights_only=True, mmap=True)["state_dict"]
    assert report.keys == len(state) and report.coverage == 1.0
    assert report.mapped + report.derived + len(report.dropped) == len(state)
    assert report.filled == report.ours == len(loaded.model.state_dict()) and not report.initialised
    dropped = set(report.dropped)
    assert "logit_scale_it_a" in dropped
    assert {k for k in dropped if k.startswith("audio_encoder.")} >= {
        k for k in state if k.startswith("audio_encoder.model.audio_enc.audio_feats_extractor.")}
    # only keys that cannot move an embedding are dropped (or an unused block's fixed position index)
    fixed = {k for k in dropped if k.endswith(("relative_position_index", "attn_mask"))}
    assert dropped - fixed <= set(AuthorsSat2Sound(SIZES).inert_keys()) and len(fixed) <= 2


def test_manifest_records_the_source_and_the_mapping(files, imported):
    manifest = read_manifest(files[2] / "imported")
    from contracts.artifacts import sha256_file

    assert manifest["import"]["sha256"] == sha256_file(files[0])
    assert manifest["import"]["mapping_version"] == MAPPING_VERSION
    assert manifest["import"]["hyper_parameters"]["sat_type"] == "bingmap"
    assert manifest["import"]["coverage"] == 1.0
    assert "optimizer_states" in manifest["import"]["training_state_entries"]


# ------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("tower", ["image", "audio", "text"])
def test_each_tower_equals_the_reference(imported, reference_embeddings, tower):
    loaded = imported[1]
    ours = _embeddings(loaded.model, _inputs(loaded.cfg))[tower]
    ref = reference_embeddings[tower]
    assert float((ours - ref).abs().max()) < TOL
    assert float(torch.nn.functional.cosine_similarity(ours, ref).min()) > 1 - 1e-6


def test_missing_month_and_hour_follow_the_authors_padding_rule(imported, reference):
    """Month and hour invalid (the authors' GeoSound rows without a date): both sides zero those tokens."""
    loaded = imported[1]
    x = _inputs(loaded.cfg)
    valid = torch.ones(3, 5)
    valid[1, 1:3] = 0  # ours: latlon, month, hour, audio_source, caption_source
    raw = {**x["raw_meta"], "month_valid": valid[:, 1].bool(), "hour_valid": valid[:, 2].bool()}
    ref = reference.encode_image(x["image"], x["zoom"], "bingmap", raw)
    gsd = torch.full((3,), 0.6)
    with torch.no_grad():
        ours = loaded.model.encode_image(x["image"], x["zoom"], gsd, _ours_meta(x["raw_meta"], valid)).embedding
    assert float((ours - ref).abs().max()) < TOL


def test_fusion_equals_torch_transformer_encoder(imported, reference):
    """Our post-norm fusion block against the authors' own class, torch.nn.TransformerEncoder."""
    loaded = imported[1]
    tokens = torch.randn(2, 9, loaded.cfg.model.codebook.dim)
    with torch.no_grad():
        ours = loaded.model.fusion(tokens)
        theirs = reference.sat_encoder.meta_fuser.transformer_encoder(tokens)
    assert float((ours - theirs).abs().max()) < TOL


def test_swapping_two_blocks_in_the_file_changes_the_embeddings(files, reference_embeddings, tmp_path):
    data = torch.load(files[0], weights_only=True)
    state = data["state_dict"]
    a, b = "satmae_backbone.backbone.blocks.0.", "satmae_backbone.backbone.blocks.1."
    for key in [k for k in state if k.startswith(a)]:
        other = b + key[len(a):]
        state[key], state[other] = state[other], state[key]
    torch.save(data, tmp_path / "swapped.ckpt")
    import_checkpoint(tmp_path / "swapped.ckpt", files[1], tmp_path / "out", base=get_preset("published-tiny"))
    model = load_checkpoint(tmp_path / "out").model
    x = _inputs(model.cfg)
    assert float((_embeddings(model, x)["image"] - reference_embeddings["image"]).abs().max()) > 100 * TOL


def test_any_single_wrong_tensor_breaks_parity(imported, reference_embeddings):
    """A mis-mapped key puts another tensor of the same shape in one slot: for every tensor of ours (except the
    training-only logit scales), such a tensor (here: its own values plus noise of their scale) moves some tower
    ten times further from the reference than the parity tolerance."""
    model = imported[1].model
    x = _inputs(imported[1].cfg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    insensitive = []
    for key, value in state.items():
        if key.startswith("logit_scale.") or not value.is_floating_point() or value.numel() < 2:
            continue
        wrong = value + (value.std() + 0.05) * torch.randn(value.shape, generator=g)
        model.load_state_dict({**state, key: wrong})
        if _gap(_embeddings(model, x), reference_embeddings) < 10 * TOL:
            insensitive.append(key)
    model.load_state_dict(state)
    assert insensitive == [], insensitive


# -------------------------------------------------------------------------------------------------- errors


def _save(tmp_path, name, data) -> Path:
    torch.save(data, tmp_path / name)
    return tmp_path / name


def _mutated(files, change) -> dict:
    data = torch.load(files[0], weights_only=True)
    change(data)
    return data


@pytest.mark.parametrize("case, match", [
    ("other_model", "not a Sat2Sound checkpoint"),
    ("missing_key", "missing keys"),
    ("extra_key", "does not know"),
    ("wrong_shape", "do not fit"),
    ("no_hparams", "hyper_parameters"),
    ("bad_sat", "sat_type"),
    ("bad_meta", "metadata_type"),
    ("bad_codebook", "contradicts itself"),
])
def test_bad_checkpoints_are_refused_and_leave_nothing(files, tmp_path, case, match):
    def change(data):
        s = data["state_dict"]
        if case == "other_model":
            data["state_dict"] = {f"encoder.layer.{i}.weight": torch.zeros(2, 2) for i in range(4)}
        elif case == "missing_key":
            del s["fdt.img_query_model.q_map.4.bias"]
        elif case == "extra_key":
            s["satmae_backbone.backbone.cls_token"] = torch.zeros(1, 1, 32)
        elif case == "wrong_shape":
            s["fdt.audio_query_model.q_map.1.weight"] = torch.zeros(32, 63)
        elif case == "no_hparams":
            del data["hyper_parameters"]
        elif case == "bad_sat":
            data["hyper_parameters"]["sat_type"] = "landsat"
        elif case == "bad_meta":
            data["hyper_parameters"]["metadata_type"] = "latlong_weather"
        elif case == "bad_codebook":
            data["hyper_parameters"]["codebook_size"] = 16000

    path = _save(tmp_path, f"{case}.ckpt", _mutated(files, change))
    with pytest.raises(CheckpointError, match=match):
        import_checkpoint(path, files[1], tmp_path / "out", base=get_preset("published-tiny"))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_truncated_file_and_foreign_pickle_are_refused(files, tmp_path):
    blob = files[0].read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        import_checkpoint(tmp_path / "cut.ckpt", files[1], tmp_path / "out")
    data = torch.load(files[0], weights_only=True)
    data["hyper_parameters"] = argparse.Namespace(sat_type="bingmap")  # an object weights_only refuses to build
    torch.save(data, tmp_path / "pickle.ckpt")
    with pytest.raises(CheckpointError, match="refuses to run"):
        import_checkpoint(tmp_path / "pickle.ckpt", files[1], tmp_path / "out")
    with pytest.raises(CheckpointError, match="does not exist"):
        import_checkpoint(tmp_path / "nope.ckpt", files[1], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_text_encoder_folder_missing_or_of_another_width(files, tmp_path):
    with pytest.raises(ConfigError, match="does not exist|missing|not found"):
        import_checkpoint(files[0], tmp_path / "no-t5", tmp_path / "out", base=get_preset("published-tiny"))
    wide = write_t5_folder(tmp_path / "t5-wide", d_model=32, layers=1, heads=2, d_ff=48)
    with pytest.raises(ConfigError, match="32 wide"):
        import_checkpoint(files[0], wide, tmp_path / "out", base=get_preset("published-tiny"))
    assert not (tmp_path / "out").exists()


def test_an_existing_output_needs_force(files, imported, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="--force"):
        import_checkpoint(files[0], files[1], out, base=get_preset("published-tiny"))
    import_checkpoint(files[0], files[1], out, base=get_preset("published-tiny"), force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_import_prints_the_key_report(files, tmp_path, capsys):
    ckpt, t5, _ = files
    rc = main(["import", str(ckpt), "--text-encoder", str(t5), "--out", str(tmp_path / "cli"), "--preset",
               "published-tiny"])
    out = capsys.readouterr().out
    assert rc == 0 and "coverage 100%" in out and "dropped logit_scale_it_a" in out
    rc = main(["import", str(tmp_path / "missing.ckpt"), "--text-encoder", str(t5), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err


def test_reference_is_independent_of_the_import_path():
    """The reference and the stand-in writer read nothing of this project's model code."""
    for name in ("reference.py", "reference_htsat.py", "standin.py"):
        tree = ast.parse((ROOT / "published" / name).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in mods if m.split(".")[0] in ("core", "world", "compress", "export")}, name
