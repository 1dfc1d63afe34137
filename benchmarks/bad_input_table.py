"""The command-line bad inputs of ``benchmarks.bad_inputs``, stage by stage (the app's are in bad_input_cases)."""

from __future__ import annotations

from benchmarks.bad_input_cases import NOT_UTF8, OCEAN, Case, Fixtures, _edited_json, _flip_byte, _truncated_copy
from benchmarks.fault_stages import BUNDLE_REGION, MAP_BBOX


def _data(f: Fixtures) -> str:
    return str(f.chain.world)


def _build(out: str, *extra: str) -> list[str]:
    return ["data", "build", "--preset", "tiny", "--n-samples", "6", "--workers", "1", "--no-progress",
            "--out", out, *extra]


def _train(f: Fixtures, *extra: str, out: str | None = None, data: str | None = None) -> list[str]:
    return ["train", "--preset", "tiny", "--data", data or _data(f), "--out", out or str(f.scratch / "t"),
            "--no-progress", "--max-steps", "1", *extra]


def _map(f: Fixtures, *extra: str, bbox: str = MAP_BBOX) -> list[str]:
    return ["map", "--ckpt", str(f.chain.teacher), "--bbox", bbox, "--cols", "4", "--workers", "0",
            "--no-progress", "--out", str(f.scratch / "m"), *extra]


def _query(f: Fixtures, *extra: str, gallery: str | None = None) -> list[str]:
    return ["gallery", "query", gallery or str(f.chain.gallery), *extra]


def _gbuild(f: Fixtures, *extra: str, out: str | None = None) -> list[str]:
    return ["gallery", "build", "--ckpt", str(f.chain.teacher), "--captions", _data(f), "--split", "test",
            "--no-progress", "--out", out or str(f.scratch / "g"), *extra]


def _bundle(f: Fixtures, *extra: str, out: str | None = None, region: str = BUNDLE_REGION) -> list[str]:
    return ["bundle", "--export", str(f.chain.export), "--gallery", str(f.chain.gallery), "--region", region,
            "--no-progress", "--out", out or str(f.scratch / "b"), *extra]


def _under_file(f: Fixtures, name: str) -> str:
    return str(f.file(name) / "sub" / "out")


def stage_cases() -> list[Case]:
    t, w = "train", "data build"
    return [
        # ------------------------------------------------------------------ data build / check
        Case(w, "--n-samples 0", lambda f: _build(str(f.scratch / "w0"), "--n-samples", "0")),
        Case(w, "--n-samples -5", lambda f: _build(str(f.scratch / "w1"), "--n-samples", "-5")),
        Case(w, "--n-samples abc", lambda f: _build(str(f.scratch / "w2"), "--n-samples", "abc")),
        Case(w, "--preset nosuch", lambda f: ["data", "build", "--preset", "nosuch", "--out", str(f.scratch / "w3")]),
        Case(w, "--audio loud", lambda f: _build(str(f.scratch / "w4"), "--audio", "loud")),
        Case(w, "--out under an existing file", lambda f: _build(_under_file(f, "wf"))),
        Case(w, "--out is an existing file", lambda f: _build(str(f.file("wfile")))),
        Case(w, "--out a non-empty folder", lambda f: _build(str(f.file("wfull/x").parent))),
        Case(w, "--out on a read-only file system", lambda f: _build(str(f.read_only("w")))),
        Case(w, "--out on a full (64 KiB) file system", lambda f: _build(str(f.full_disk("w")), "--n-samples", "24")),
        Case("data check", "a folder that does not exist", lambda f: ["data", "check", str(f.scratch / "nope")]),
        Case("data check", "a file, not a folder", lambda f: ["data", "check", str(f.file("dc-file"))]),
        Case("data check", "a shard that is not Parquet", lambda f: ["data", "check", str(
            _edited_json(f, f.chain.world, "dc-garbage", next(p.relative_to(f.chain.world).as_posix() for p in
                                                              sorted(f.chain.world.rglob("*.parquet"))), "junk"))]),
        Case("data check", "a truncated shard", lambda f: ["data", "check", str(_truncated_copy(
            f, f.chain.world, "dc-trunc", next(p.relative_to(f.chain.world).as_posix() for p in
                                               sorted(f.chain.world.rglob("*.parquet"))), 2000))]),
        Case("data build", "--n-samples 100000000 (more than the disk holds)", lambda f: _build(
            str(f.scratch / "w-huge"), "--n-samples", "100000000")),
        Case("data oracle", "a folder that is not a world", lambda f: ["data", "oracle", str(
            f.file("not-world/x").parent)]),
        # ------------------------------------------------------------------ train
        Case(t, "--data that does not exist", lambda f: _train(f, data=str(f.scratch / "nodata"))),
        Case(t, "--data an empty folder", lambda f: _train(f, data=str(f.file("empty-data/.k").parent))),
        Case(t, "--epochs 0", lambda f: _train(f, "--epochs", "0")),
        Case(t, "--batch-size 0", lambda f: _train(f, "--batch-size", "0")),
        Case(t, "--batch-size 100000000 (larger than the split: trains on the whole split per step)",
             lambda f: _train(f, "--batch-size", "100000000"), succeeds=True),
        Case(t, "--lr -1", lambda f: _train(f, "--lr", "-1")),
        Case(t, "--set nosuch.key=1", lambda f: _train(f, "--set", "nosuch.key=1")),
        Case(t, "--set train.epochs=abc", lambda f: _train(f, "--set", "train.epochs=abc")),
        Case(t, "--head bogus", lambda f: _train(f, "--head", "bogus")),
        Case(t, "--out under an existing file", lambda f: _train(f, out=_under_file(f, "tf"))),
        Case(t, "--out on a read-only file system", lambda f: _train(f, out=str(f.read_only("t")))),
        # ------------------------------------------------------------------ evaluate
        Case("evaluate", "--ckpt that does not exist", lambda f: ["evaluate", "--ckpt", str(f.scratch / "no"),
                                                                  "--data", _data(f)]),
        Case("evaluate", "--ckpt a dataset folder", lambda f: ["evaluate", "--ckpt", _data(f), "--data", _data(f)]),
        Case("evaluate", "--ckpt with truncated weights", lambda f: ["evaluate", "--ckpt", str(
            _truncated_copy(f, f.chain.teacher, "e-trunc", "model.safetensors")), "--data", _data(f)]),
        Case("evaluate", "--ckpt whose weights had a byte flipped", lambda f: ["evaluate", "--ckpt", str(
            _flip_byte(f, f.chain.teacher, "e-flip", "model.safetensors")), "--data", _data(f)]),
        Case("evaluate", "--ckpt whose config.json is not JSON", lambda f: ["evaluate", "--ckpt", str(
            _edited_json(f, f.chain.teacher, "e-cfg", "config.json", "{")), "--data", _data(f)]),
        Case("evaluate", "--split nosuch", lambda f: ["evaluate", "--ckpt", str(f.chain.teacher), "--data",
                                                      _data(f), "--split", "nosuch"]),
        Case("evaluate", "--out on a read-only file system", lambda f: [
            "evaluate", "--ckpt", str(f.chain.teacher), "--data", _data(f), "--out", str(f.read_only("e.json"))]),
        # ------------------------------------------------------------------ map
        Case("map", "--bbox garbage", lambda f: _map(f, bbox="a,b,c,d")),
        Case("map", "--bbox with three numbers", lambda f: _map(f, bbox="1,2,3")),
        Case("map", "--bbox west > east", lambda f: _map(f, bbox="10,40,5,45")),
        Case("map", "--bbox latitude 100", lambda f: _map(f, bbox="0,0,10,100")),
        Case("map", "--cols 0", lambda f: _map(f, "--cols", "0", "--query", "birds")),
        Case("map", "--cols 200000", lambda f: _map(f, "--cols", "200000", "--query", "birds")),
        Case("map", "no --query", lambda f: _map(f)),
        Case("map", "an empty --query", lambda f: _map(f, "--query", "  ")),
        Case("map", "a --query that is not UTF-8", lambda f: _map(f, "--query", NOT_UTF8)),
        Case("map", "--query-audio that does not exist", lambda f: _map(f, "--query-audio", str(f.scratch / "x.wav"))),
        Case("map", "--query-audio a text file", lambda f: _map(f, "--query-audio", str(f.file("a.wav", "text")))),
        Case("map", "--zoom 2", lambda f: _map(f, "--zoom", "2", "--query", "birds")),
        Case("map", "--hour 25", lambda f: _map(f, "--hour", "25", "--query", "birds")),
        Case("map", "--shard 3/2", lambda f: _map(f, "--shard", "3/2", "--query", "birds")),
        Case("map", "--out on a read-only file system", lambda f: _map(f, "--query", "birds", "--out",
                                                                       str(f.read_only("m")))),
        Case("map", "--bbox all over open water", lambda f: _map(f, "--query", "birds", bbox=OCEAN), succeeds=True),
        Case("ground", "--ckpt that does not exist", lambda f: ["ground", "--ckpt", str(f.scratch / "no"),
                                                                "--text", "birds", "--at", "40,-90"]),
        Case("ground", "--tile that is not an image", lambda f: ["ground", "--ckpt", str(f.chain.teacher),
                                                                 "--text", "birds", "--tile", str(f.file("t.png")),
                                                                 "--out", str(f.scratch / "gr")]),
        # ------------------------------------------------------------------ distill / quantize / export
        Case("distill", "--ckpt that does not exist", lambda f: [
            "distill", "--ckpt", str(f.scratch / "no"), "--data", _data(f), "--out", str(f.scratch / "s")]),
        Case("distill", "--out under an existing file", lambda f: [
            "distill", "--ckpt", str(f.chain.teacher), "--preset", "student-tiny", "--data", _data(f),
            "--out", _under_file(f, "sf"), "--max-steps", "1", "--no-progress"]),
        Case("quantize", "--ckpt that does not exist", lambda f: [
            "quantize", "--ckpt", str(f.scratch / "no"), "--calib", _data(f), "--out", str(f.scratch / "q")]),
        Case("quantize", "--out that exists, without --force", lambda f: [
            "quantize", "--ckpt", str(f.chain.student), "--calib", _data(f), "--out", str(f.chain.int8)]),
        Case("quantize", "--towers nosuch", lambda f: [
            "quantize", "--ckpt", str(f.chain.student), "--calib", _data(f), "--out", str(f.scratch / "q1"),
            "--towers", "nosuch"]),
        Case("quantize", "--calib that does not exist", lambda f: [
            "quantize", "--ckpt", str(f.chain.student), "--calib", str(f.scratch / "nocalib"),
            "--out", str(f.scratch / "q2")]),
        Case("export", "--target nosuch", lambda f: [
            "export", "--ckpt", str(f.chain.int8), "--target", "nosuch", "--out", str(f.scratch / "x")]),
        Case("export", "--ckpt a dataset folder", lambda f: [
            "export", "--ckpt", _data(f), "--target", "onnx", "--out", str(f.scratch / "x1")]),
        Case("export", "--out that exists, without --force", lambda f: [
            "export", "--ckpt", str(f.chain.int8), "--target", "onnx", "--out", str(f.chain.export)]),
        Case("export", "--towers bogus", lambda f: [
            "export", "--ckpt", str(f.chain.int8), "--target", "onnx", "--towers", "bogus",
            "--out", str(f.scratch / "x2")]),
        Case("export", "--out on a read-only file system", lambda f: [
            "export", "--ckpt", str(f.chain.int8), "--target", "onnx", "--towers", "audio", "--no-progress",
            "--out", str(f.read_only("x"))]),
        # ------------------------------------------------------------------ gallery
        Case("gallery build", "--captions that do not exist", lambda f: _gbuild(f, "--captions",
                                                                                 str(f.scratch / "nocap"))),
        Case("gallery build", "--out is an existing file", lambda f: _gbuild(f, out=str(f.file("gfile")))),
        Case("gallery build", "--out on a read-only file system", lambda f: _gbuild(f, out=str(f.read_only("g")))),
        Case("gallery build", "--out on a full (64 KiB) file system", lambda f: _gbuild(f, out=str(f.full_disk("g")))),
        Case("export", "--out on a full (64 KiB) file system", lambda f: [
            "export", "--ckpt", str(f.chain.int8), "--target", "onnx", "--towers", "image", "--no-progress",
            "--out", str(f.full_disk("x"))]),
        Case("gallery build", "--split nosuch", lambda f: _gbuild(f, "--split", "nosuch")),
        Case("gallery build", "--batch-size 0", lambda f: _gbuild(f, "--batch-size", "0")),
        Case("gallery build", "resume a gallery with another model", lambda f: [
            "gallery", "build", "--ckpt", str(f.chain.student), "--captions", _data(f), "--split", "test",
            "--no-progress", "--out", str(f.copy(f.chain.gallery, "g-other"))]),
        Case("gallery query", "a gallery that does not exist", lambda f: _query(f, "--text", "birds",
                                                                              gallery=str(f.scratch / "nog"))),
        Case("gallery query", "a truncated gallery.db", lambda f: _query(f, "--text", "birds", gallery=str(
            _truncated_copy(f, f.chain.gallery, "g-trunc", "gallery.db", 4096)))),
        Case("gallery query", "index.json that is not JSON", lambda f: _query(f, "--text", "birds", gallery=str(
            _edited_json(f, f.chain.gallery, "g-json", "index.json", "{")))),
        Case("gallery query", "--text that is not UTF-8", lambda f: _query(f, "--text", NOT_UTF8)),
        Case("gallery query", "--k 0", lambda f: _query(f, "--text", "birds", "--k", "0")),
        Case("gallery query", "--at 95,0 (latitude beyond the pole)", lambda f: _query(f, "--at", "95,0")),
        Case("gallery query", "--play-out on a read-only file system", lambda f: _query(
            f, "--text", "birds", "--play-out", str(f.read_only("hit.ogg")))),
        Case("gallery query", "--play-out under an existing file", lambda f: _query(
            f, "--text", "birds", "--play-out", _under_file(f, "pf"))),
        # ------------------------------------------------------------------ bundle / pipeline / import
        Case("bundle", "--region garbage", lambda f: _bundle(f, region="x,y")),
        Case("bundle", "--region the whole world", lambda f: _bundle(f, region="-179,-80,179,80")),
        Case("bundle", "--export that does not exist", lambda f: _bundle(f, "--export", str(f.scratch / "noe"))),
        Case("bundle", "--gallery a folder that is not a gallery", lambda f: _bundle(f, "--gallery",
                                                                                     str(f.chain.world))),
        Case("bundle", "--out that exists, without --force", lambda f: _bundle(f, out=str(f.chain.bundle))),
        Case("bundle", "--out on a read-only file system", lambda f: _bundle(f, out=str(f.read_only("b")))),
        Case("pipeline", "--only nosuch", lambda f: ["pipeline", "--preset", "tiny", "--out", str(f.scratch / "p"),
                                                     "--only", "nosuch"]),
        Case("pipeline", "--preset nosuch", lambda f: ["pipeline", "--preset", "nosuch", "--out",
                                                       str(f.scratch / "p")]),
        Case("import", "a .ckpt that does not exist", lambda f: [
            "import", str(f.scratch / "no.ckpt"), "--text-encoder", str(f.scratch), "--out", str(f.scratch / "i")]),
        Case("import", "a text file as .ckpt", lambda f: [
            "import", str(f.file("x.ckpt", "text")), "--text-encoder", str(f.scratch), "--out", str(f.scratch / "i")]),
        Case("walk", "--route that does not exist", lambda f: [
            "walk", "--bundle", str(f.chain.bundle), "--route", str(f.scratch / "no.gpx"),
            "--out", str(f.scratch / "walk.wav")]),
        Case("walk", "--route that is not GPX", lambda f: [
            "walk", "--bundle", str(f.chain.bundle), "--route", str(f.file("r.gpx", "<html>")),
            "--out", str(f.scratch / "walk.wav")]),
    ]
