"""The authors' public-demo HDF5 gallery as a caption source: listing, lazy clips, builds through the CLI with the
import renderer (``--zoom``, ``--limit``), and every bad input named by file and field."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import save_untrained

from contracts.errors import DataError
from core.cli import main as cli_main
from gallery.captions import read_captions
from gallery.demo_hdf5 import read_demo_captions, read_demo_clip
from gallery.query import Gallery
from gallery.renderers import ImportRenderer

N, RATE, SECONDS = 4, 44100, 0.5
WORDS = ["birds in a forest", "traffic on a highway", "waves on a beach", "a bell over a village"]


def caption(i: int, z: int) -> str:
    return f"{WORDS[i]} seen at zoom {z}"


def tone_hz(i: int, z: int) -> float:
    return 300.0 + 400.0 * i + 100.0 * z


def demo_arrays(n: int = N) -> dict[str, np.ndarray]:
    """Every dataset of the demo layout: byte strings, stereo (N, 2, samples) float32 clips at 44.1 kHz."""
    t = np.arange(int(SECONDS * RATE)) / RATE
    rng = np.random.default_rng(0)
    data: dict[str, np.ndarray] = {
        "sample_id": np.array([f"s{i:03d}".encode() for i in range(n)], dtype=object),
        "audio_caption": np.array([b"an audio caption"] * n, dtype=object),
        "audio_raw": (0.1 * rng.normal(size=(n, t.size))).astype(np.float32),
        "audio_embedding": rng.normal(size=(n, 16)).astype(np.float32),
    }
    for z in (1, 3, 5):
        data[f"llava_caption_zl{z}"] = np.array([caption(i, z).encode() for i in range(n)], dtype=object)
        data[f"text_embedding_zl{z}"] = rng.normal(size=(n, 16)).astype(np.float32)
        left = np.stack([0.4 * np.sin(2 * np.pi * tone_hz(i, z) * t) for i in range(n)])
        data[f"synth_audio_zl{z}"] = np.stack([left, 0.5 * left], axis=1).astype(np.float32)
    return data


def write_demo(path: Path, data: dict[str, np.ndarray] | None = None) -> Path:
    data = demo_arrays() if data is None else data
    with h5py.File(path, "w") as f:
        for name, value in data.items():
            if value.dtype == object and value.size and isinstance(value.flat[0], bytes):
                f.create_dataset(name, data=value, dtype=h5py.string_dtype("utf-8"))
            else:
                f.create_dataset(name, data=value)
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo") / "demo.h5")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cfg) -> Path:
    return save_untrained(tmp_path_factory, tiny_cfg, "hdf5-teacher")


def build(ckpt: Path, captions: Path, out: Path, *extra: str) -> int:
    return cli_main(["gallery", "build", "--ckpt", str(ckpt), "--captions", str(captions), "--renderer", "import",
                     "--out", str(out), "--threads", "1", "--workers", "1", "--clip-format", "flac",
                     "--no-progress", *extra])


# ------------------------------------------------------------------------------------------------ listing


def test_one_record_per_sample_and_zoom_with_its_clip(demo):
    recs = read_captions(demo, need_audio=True)
    assert [r.caption for r in recs] == [caption(i, z) for i in range(N) for z in (1, 3, 5)]
    assert recs[4].provenance == [{"sample_id": "s001", "zoom": 3, "row": 1}]
    assert recs[4].audio_path == demo and recs[4].audio_item == ("synth_audio_zl3", 1)
    assert len(read_captions(demo, limit=5)) == 5
    three = read_captions(demo, zooms=(3,), need_audio=True)
    assert [r.first["zoom"] for r in three] == [3] * N and three[2].audio_item == ("synth_audio_zl3", 2)
    wave, rate = read_demo_clip(demo, "synth_audio_zl5", 2)
    assert rate == RATE and wave.shape == (int(SECONDS * RATE),) and wave.dtype == np.float32
    expected = demo_arrays()["synth_audio_zl5"][2].mean(axis=0)
    assert np.allclose(wave, expected, atol=1e-6)  # stereo mixed to mono


def test_fixed_length_strings_duplicates_and_other_audio_layouts(tmp_path):
    data = demo_arrays()
    data["sample_id"] = np.array([f"s{i}".encode() for i in range(N)], dtype="S8")
    data["llava_caption_zl5"][3] = caption(0, 1).encode()  # the same text again: one item, both provenances
    data["synth_audio_zl1"] = data["synth_audio_zl1"][:, 0, :]  # (N, samples) mono rows
    del data["synth_audio_zl3"]
    path = write_demo(tmp_path / "d.hdf5", data)
    with h5py.File(path, "a") as f:
        f["synth_audio_zl5"].attrs["sample_rate"] = 22050
    recs = read_captions(path)  # captions only (procedural renderer): missing clips are no error
    assert len(recs) == 3 * N - 1
    assert recs[0].provenance == [{"sample_id": "s0", "zoom": 1, "row": 0}, {"sample_id": "s3", "zoom": 5, "row": 3}]
    assert recs[0].audio_item == ("synth_audio_zl1", 0) and recs[1].audio_item is None
    assert read_demo_clip(path, "synth_audio_zl1", 0)[0].shape == (int(SECONDS * RATE),)
    assert read_demo_clip(path, "synth_audio_zl5", 0)[1] == 22050
    with pytest.raises(DataError, match="no zoom 3 clip dataset 'synth_audio_zl3'"):
        read_captions(path, need_audio=True)
    vlen = tmp_path / "vlen.h5"
    with h5py.File(vlen, "w") as f:
        f["sample_id"] = np.array([b"a", b"b"])
        f["llava_caption_zl1"] = np.array([b"rain on a roof", b"wind in the trees"])
        ds = f.create_dataset("synth_audio_zl1", (2,), dtype=h5py.vlen_dtype(np.float32))
        ds[0], ds[1] = np.full(100, 0.1, np.float32), np.full(50, -0.2, np.float32)
    recs = read_demo_captions(vlen, zooms=(1,))
    assert [len(read_demo_clip(vlen, *r.audio_item)[0]) for r in recs] == [100, 50]


# ------------------------------------------------------------------------------------------------ builds


def test_cli_builds_a_gallery_from_the_demo_file(tmp_path, demo, ckpt, capsys):
    from gallery.embedder import TeacherEmbedder

    assert build(ckpt, demo, tmp_path / "all", "--seconds", "0.3") == 0
    assert "12 items (12 new" in capsys.readouterr().out
    embedder = TeacherEmbedder(ckpt, threads=1)
    with Gallery.open(tmp_path / "all", verify="full") as g, h5py.File(demo) as f:
        assert len(g) == 12 and g.meta["renderer"] == "import" and g.meta["caption_source"] == str(demo.resolve())
        for i in range(N):
            for z in (1, 3, 5):
                rec = read_captions(demo, zooms=(z,))[i]
                item = g.item(rec.id)
                assert item.caption == caption(i, z) and item.zoom == z
                assert item.provenance == [{"sample_id": f"s{i:03d}", "zoom": z, "row": i}]
                assert item.sample_rate == 8000 and item.seconds == pytest.approx(0.3, abs=1e-3)  # cut to --seconds
        wave, sr = g.decode_clip(read_captions(demo)[5].id)  # sample 1, zoom 5: resampled 44.1 -> 8 kHz
        assert sr == 8000 and len(wave) == 2400
        spectrum = np.abs(np.fft.rfft(wave))
        assert np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()] == pytest.approx(tone_hz(1, 5), abs=10)
        # the caption vectors are our model's, never the file's text_embedding_zl*
        vectors, _ = g.vectors("caption")  # label order = id order
        mine = embedder.embed_texts([g.item(i).caption for i in g.ids()])
        assert np.allclose(vectors, mine, atol=1e-5) and f["text_embedding_zl1"].shape[1] != vectors.shape[1]
    # clips shorter than --seconds are kept whole (not padded), as the import renderer does
    assert build(ckpt, demo, tmp_path / "z3", "--zoom", "3", "--seconds", "10") == 0
    with Gallery.open(tmp_path / "z3") as g:
        items = [g.item(i) for i in g.ids()]
        assert len(items) == N and {it.zoom for it in items} == {3}
        assert all(it.seconds == pytest.approx(SECONDS, abs=1e-3) for it in items)
    assert build(ckpt, demo, tmp_path / "lim", "--limit", "5", "--zoom", "5,1") == 0
    with Gallery.open(tmp_path / "lim") as g:
        assert [g.item(i).caption for i in g.ids()] == [caption(0, 5), caption(0, 1), caption(1, 5),
                                                          caption(1, 1), caption(2, 5)]
    capsys.readouterr()
    for extra, message in ((["--zoom", "x"], "--zoom wants zoom levels"), (["--zoom", "2"], "llava_caption_zl2"),
                           (["--split", "test"], "has no splits")):
        assert build(ckpt, demo, tmp_path / "bad", *extra) == 2
        assert message in capsys.readouterr().err
    text = tmp_path / "caps.txt"
    text.write_text("rain on a roof\n")
    assert cli_main(["gallery", "build", "--ckpt", str(ckpt), "--captions", str(text), "--out",
                     str(tmp_path / "t"), "--zoom", "1", "--no-progress"]) == 2
    assert "this source has no zooms" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bad inputs


def _broken(change):
    data = demo_arrays()
    change(data)
    return data


LISTING_ERRORS = {
    "missing sample_id": (lambda d: d.pop("sample_id"), r"no sample id dataset 'sample_id'.*field 'sample_id'"),
    "missing caption": (lambda d: d.pop("llava_caption_zl3"), r"no zoom 3 caption.*field 'llava_caption_zl3'"),
    "missing clip": (lambda d: d.pop("synth_audio_zl5"), r"no zoom 5 clip.*field 'synth_audio_zl5'"),
    "short caption column": (lambda d: d.update(llava_caption_zl1=d["llava_caption_zl1"][:3]),
                             r"has 3 rows but sample_id has 4.*field 'llava_caption_zl1'"),
    "short clip column": (lambda d: d.update(synth_audio_zl3=d["synth_audio_zl3"][:2]),
                          r"has 2 rows but sample_id has 4.*field 'synth_audio_zl3'"),
    "empty caption": (lambda d: d["llava_caption_zl5"].__setitem__(2, b"   "),
                      r"empty caption in row 2.*sample s002, field 'llava_caption_zl5'"),
    "audio rank 1": (lambda d: d.update(synth_audio_zl1=np.zeros(N, np.float32)),
                     r"audio of rank 1.*field 'synth_audio_zl1'"),
    "audio rank 4": (lambda d: d.update(synth_audio_zl1=d["synth_audio_zl1"][:, None]),
                     r"audio of rank 4.*field 'synth_audio_zl1'"),
    "channels last": (lambda d: d.update(synth_audio_zl1=d["synth_audio_zl1"].transpose(0, 2, 1).copy()),
                      r"looks like \(N, samples, channels\).*field 'synth_audio_zl1'"),
}


@pytest.mark.parametrize("case", list(LISTING_ERRORS))
def test_bad_files_are_named_by_file_and_field(tmp_path, case):
    change, message = LISTING_ERRORS[case]
    path = write_demo(tmp_path / "bad.h5", _broken(change))
    with pytest.raises(DataError, match=message) as err:
        read_captions(path, need_audio=True)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_not_hdf5_and_bad_clips(tmp_path):
    fake = tmp_path / "demo.h5"
    fake.write_text("sample_id,caption\n")
    with pytest.raises(DataError, match=rf"not an HDF5 file.*{fake}"):
        read_captions(fake, need_audio=True)

    def silence(d):
        d["synth_audio_zl3"][1] = 0.0

    def nan(d):
        d["synth_audio_zl5"][2, 1, 7] = np.nan

    path = write_demo(tmp_path / "clips.h5", _broken(lambda d: (silence(d), nan(d))))
    recs = read_captions(path, need_audio=True)  # listing reads no clip: bad clips surface when rendered
    renderer = ImportRenderer(seconds=1.0, sample_rate=8000)
    renderer.prepare(recs)
    assert renderer.render(recs[0]).wave.shape == (4000,)
    with pytest.raises(DataError, match=r"silent \(all zeros\).*clips.h5, sample s001, field 'synth_audio_zl3'"):
        renderer.render(recs[4])
    with pytest.raises(DataError, match=r"1 NaN or infinite.*sample s002, field 'synth_audio_zl5'"):
        renderer.render(recs[8])
