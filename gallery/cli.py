"""``sat2sound gallery build|reindex|query|info``: make a soundscape gallery, (re)index, search, describe and check it.

Examples::

    sat2sound gallery build --ckpt runs/teacher --captions runs/world --renderer procedural --out runs/gallery
    sat2sound gallery build --ckpt runs/teacher --captions tangoflux/clips.csv --renderer import --out runs/tf
    sat2sound gallery build --ckpt runs/teacher --captions demo.h5 --renderer import --zoom 1,3 --out runs/demo
    sat2sound gallery build ... --index hnswlib          # or exact; default usearch (--index-dtype f16)
    sat2sound gallery reindex runs/gallery [--index usearch --index-dtype f16] [--ckpt runs/teacher]
    sat2sound gallery query runs/gallery --text "waves breaking on a sandy beach" --k 5 --play-out top.ogg
    sat2sound gallery query runs/gallery --at=42.0,-93.5 --zoom 3 --hour 6 --month 5
    sat2sound gallery info runs/gallery --verify

``demo.h5`` is the authors' public-demo gallery (gallery/demo_hdf5.py): one item per sample and zoom, its
``llava_caption_zl{z}`` re-embedded by our model (the file's ``text_embedding_zl*`` are never used) and its
``synth_audio_zl{z}`` clip (44.1 kHz) resampled to the gallery rate and cut to ``--seconds``.

(Write ``--at=LAT,LON`` with an equals sign when the latitude is negative, or argparse reads it as an option.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from contracts.durability import check_room
from contracts.errors import DataError
from core.cli_args import add_shared, parse_lat_lon
from engine.config import add_engine_options, engine_from_args
from gallery.errors import GalleryError
from gallery.layout import (
    CLIP_FORMATS,
    DEFAULT_DTYPE,
    DEFAULT_INDEX,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    INDEX_CHOICES,
    KINDS,
    USEARCH_DTYPES,
)


def _add_index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=DEFAULT_INDEX, choices=INDEX_CHOICES,
                   help="search index: usearch (memory-mapped on the device; default), hnswlib, or exact (no index: "
                        "exact numpy search)")
    p.add_argument("--index-dtype", default=DEFAULT_DTYPE, choices=USEARCH_DTYPES,
                   help="how a USearch index stores vectors (hnswlib: f32 only)")
    p.add_argument("--threads", type=int, default=2, help="torch and index-building threads")
    p.add_argument("--hnsw-m", type=int, default=HNSW_M, help="graph links per node (M, USearch connectivity)")
    p.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="gallery_command", metavar="{build,reindex,query,info}")
    sub.required = True

    b = sub.add_parser("build", help="render, embed and index a caption gallery (resumable)")
    b.add_argument("--ckpt", required=True, type=Path, help="teacher checkpoint folder (embeds captions and clips)")
    b.add_argument("--captions", required=True, type=Path,
                   help="dataset folder (its LLaVA captions), text file (one per line), CSV, clip folder, or the "
                        "public demo's HDF5 gallery (.h5/.hdf5)")
    b.add_argument("--renderer", default="procedural", choices=("procedural", "import"),
                   help="procedural: synthesise each caption's sources; import: clips made elsewhere (CSV/folder, "
                        "or the HDF5 gallery's synth_audio_zl{z})")
    b.add_argument("--out", required=True, type=Path, help="gallery folder (rerun with the same folder to resume)")
    b.add_argument("--limit", type=int, default=None, help="at most this many distinct captions")
    b.add_argument("--split", default=None, help="dataset split(s) to take captions from, comma-separated")
    b.add_argument("--zoom", default=None, metavar="Z[,Z...]",
                   help="caption zoom levels to take, e.g. 1,3,5 (HDF5 gallery or dataset folder; default all)")
    b.add_argument("--imagery", default=None, help="caption columns of this imagery only (bingmap, sentinel...)")
    b.add_argument("--batch-size", type=int, default=32, help="items per batch (and per database transaction)")
    b.add_argument("--clip-format", default="ogg", choices=CLIP_FORMATS)
    b.add_argument("--clip-compression", type=float, default=None,
                   help="0 (best quality, largest) .. 1 (smallest); ogg default ~0.5 = ~54 KB per 10 s at 16 kHz")
    b.add_argument("--seconds", type=float, default=10.0, help="clip length (import: longest kept)")
    b.add_argument("--clip-audio", choices=("real", "synthetic"), default=None,
                   help="procedural renderer: play real recordings of the named sources where installed, or "
                        "synthesise all (default: what the checkpoint's world was built with)")
    b.add_argument("--sample-rate", type=int, default=None, help="clip sample rate (default: the model's)")
    b.add_argument("--workers", type=int, default=2, help="processes rendering and encoding clips")
    _add_index_options(b)
    add_shared(b, "no-progress")
    add_engine_options(b)

    r = sub.add_parser("reindex", help="rebuild a finished gallery's search index (the db is kept)")
    r.add_argument("gallery", type=Path, metavar="GALLERY_DIR")
    r.add_argument("--ckpt", type=Path, default=None,
                   help="the gallery's model, for the text and place tuning queries (default: the one it records)")
    _add_index_options(r)

    q = sub.add_parser("query", help="search a gallery by text, place or sound")
    q.add_argument("gallery", type=Path, metavar="GALLERY_DIR")
    what = q.add_mutually_exclusive_group(required=False)  # one of these, or --image (checked in _query)
    what.add_argument("--text", help="free text, embedded with the teacher's text tower")
    what.add_argument("--at", metavar="LAT,LON", help="a place of the embedded world (renders and embeds its tile); "
                      "with --image: the place in the image to look at")
    what.add_argument("--audio", type=Path, help="an audio file (search by sound)")
    q.add_argument("--image", type=Path, default=None, help="a tile image: a georeferenced raster (GeoTIFF, JPEG 2000, "
                   "MBTiles) or a plain JPEG/PNG with --gsd (search by real imagery)")
    q.add_argument("--gsd", type=float, default=None, help="with --image: metres per pixel (default: the file's own)")
    q.add_argument("--bands", default=None, help="with --image: the raster's red,green,blue band numbers")
    q.add_argument("--zoom", type=int, default=1)
    q.add_argument("--hour", type=float, default=None)
    q.add_argument("--month", type=float, default=None)
    q.add_argument("--audio-source", default=None, help="yfcc, inaturalist, aporee or freesound")
    q.add_argument("--no-location", action="store_true", help="do not give the model the place's lat/lon")
    q.add_argument("--k", type=int, default=5)
    q.add_argument("--kind", default="caption", choices=KINDS, help="which gallery embeddings to search")
    q.add_argument("--exact", action="store_true", help="exact numpy search instead of the index")
    q.add_argument("--ckpt", type=Path, default=None, help="embedding model (default: the one the gallery records)")
    q.add_argument("--play-out", type=Path, default=None, help="write the top hit's clip to this file")
    q.add_argument("--json", action="store_true", help="print hits as JSON")

    i = sub.add_parser("info", help="describe a gallery; --verify runs the deep checks")
    i.add_argument("gallery", type=Path, metavar="GALLERY_DIR")
    i.add_argument("--verify", action="store_true", help="SQLite integrity check and decode of every clip")


def run(args: argparse.Namespace) -> int:
    return {"build": _build, "reindex": _reindex, "query": _query, "info": _info}[args.gallery_command](args)


# ---------------------------------------------------------------------------------------------------- build


def _build(args: argparse.Namespace) -> int:
    from gallery.build import build_gallery
    from gallery.captions import read_captions
    from gallery.embedder import TeacherEmbedder
    from gallery.renderers import get_renderer

    if args.batch_size < 1:
        raise GalleryError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seconds <= 0:
        raise GalleryError(f"--seconds must be positive, got {args.seconds}")
    engine = engine_from_args(args)
    splits = None
    if args.split:
        from contracts.schema import normalise_split

        try:
            splits = tuple(normalise_split(s) for s in args.split.split(",") if s.strip())
        except ValueError as exc:
            raise DataError(str(exc)) from None
    records = read_captions(args.captions, splits=splits, imagery=args.imagery, limit=args.limit,
                            need_audio=args.renderer == "import", zooms=_zooms(args.zoom))
    embedder = TeacherEmbedder(args.ckpt, threads=args.threads)
    rate = args.sample_rate or embedder.sample_rate
    if args.clip_audio and args.renderer != "procedural":
        raise GalleryError("--clip-audio is for the procedural renderer; imported clips play as they are")
    renderer = get_renderer(args.renderer, seconds=args.seconds, sample_rate=rate,
                            audio=args.clip_audio or embedder.cfg.world.audio)
    # refuse up front a gallery the disk or memory cannot hold: clips (bytes per sample by format), two vectors
    # per item and a row; the index build holds both vector sets and a copy
    clip = rate * args.seconds * {"ogg": 0.4, "flac": 1.2, "wav": 2.0}.get(args.clip_format, 2.0)
    check_room(f"a gallery of {len(records):,} captions ({args.seconds:g} s {args.clip_format} clips)",
               disk=int(len(records) * (clip + 8 * embedder.dim + 1024)), out=args.out,
               memory=int(len(records) * embedder.dim * 4 * 2 * 3))
    extra = {"checkpoint": str(args.ckpt.resolve()), "preset": embedder.cfg.name,
             "text_backbone": embedder.manifest.get("text_backbone"), "caption_source": str(args.captions.resolve())}
    report = build_gallery(records, args.out, embedder, renderer, clip_format=args.clip_format,
                           clip_compression=args.clip_compression, sample_rate=rate,
                           batch_size=args.batch_size, threads=args.threads, workers=args.workers, index=args.index,
                           dtype=args.index_dtype, m=args.hnsw_m, ef_construction=args.ef_construction,
                           extra_meta=extra, progress=not args.no_progress, engine=engine)
    print(report.summary())
    return 0


def _reindex(args: argparse.Namespace) -> int:
    """Open the finished (or index-less) gallery's db as its writer and rebuild only the search index."""
    import sqlite3

    from gallery.build import finish_index
    from gallery.embedder import TeacherEmbedder
    from gallery.layout import DB_NAME
    from gallery.query import check_db_file
    from gallery.store import GalleryWriter

    db = args.gallery / DB_NAME
    if not db.is_file():
        raise GalleryError(f"{args.gallery} is not a gallery folder: {DB_NAME} is missing")
    check_db_file(db)
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        conn.close()
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise GalleryError(f"{db} is damaged or not a gallery ({exc}); rebuild the gallery") from None
    ckpt = args.ckpt or (Path(meta["checkpoint"]) if meta.get("checkpoint") else None)
    embedder = None
    if ckpt is not None:
        embedder = TeacherEmbedder(ckpt, threads=args.threads)
        if embedder.fingerprint != meta.get("model_fingerprint"):
            raise GalleryError(f"checkpoint {ckpt} (model {embedder.fingerprint[:12]}) did not embed {args.gallery}; "
                               "pass its own --ckpt")
    else:
        print("note: no checkpoint recorded or given: tuning with the gallery's own vectors only", file=sys.stderr)
    with GalleryWriter.open(args.gallery, fingerprint=meta.get("model_fingerprint"), dim=meta.get("embedding_dim"),
                            clip_format=meta.get("clip_format"), sample_rate=meta.get("sample_rate")) as writer:
        info = finish_index(writer, embedder, index=args.index, dtype=args.index_dtype, m=args.hnsw_m,
                            ef_construction=args.ef_construction, threads=args.threads)
    params = info["params"]
    print(f"reindexed {args.gallery}: {info['count']} items, index {params['index']} {params['dtype']}, "
          f"ef {params['ef']}, search mode {params['mode']}")
    return 0


def _zooms(text: str | None) -> tuple[int, ...] | None:
    """``--zoom 1,3,5`` -> (1, 3, 5); None when not given."""
    if text is None:
        return None
    try:
        zooms = tuple(dict.fromkeys(int(z) for z in text.split(",") if z.strip()))
    except ValueError:
        zooms = ()
    if not zooms or min(zooms) < 1:
        raise GalleryError(f"--zoom wants zoom levels like 1,3,5, got {text!r}")
    return zooms


# ---------------------------------------------------------------------------------------------------- query


def _query(args: argparse.Namespace) -> int:
    from gallery.embedder import TeacherEmbedder
    from gallery.query import Gallery

    at = parse_lat_lon(args.at) if args.at else None
    if args.image is not None and (args.text is not None or args.audio is not None):
        raise GalleryError("--image takes --at (a place in it), not --text or --audio")
    if args.image is None and args.text is None and at is None and args.audio is None:
        raise GalleryError("give one of --text, --at, --audio or --image")
    if args.image is None and (args.gsd is not None or args.bands is not None):
        raise GalleryError("--gsd and --bands go with --image")
    if args.k < 1:
        raise GalleryError(f"--k must be at least 1, got {args.k}")
    with Gallery.open(args.gallery, exact=args.exact) as gallery:
        ckpt = args.ckpt or (Path(gallery.meta["checkpoint"]) if gallery.meta.get("checkpoint") else None)
        if ckpt is None:
            raise GalleryError(f"{args.gallery} records no checkpoint: pass --ckpt")
        embedder = TeacherEmbedder(ckpt)
        if embedder.fingerprint != gallery.fingerprint:
            raise GalleryError(f"checkpoint {ckpt} (model {embedder.fingerprint[:12]}) is not the model that embedded "
                               f"{args.gallery} ({gallery.fingerprint[:12]}); pass the right --ckpt or rebuild")
        if args.image is not None:
            from gallery.image_query import embed_image_file

            vector, seen = embed_image_file(embedder, args.image, zoom=args.zoom, at=at, gsd=args.gsd,
                                            bands=args.bands, hour=args.hour, month=args.month,
                                            audio_source=args.audio_source, use_location=not args.no_location)
            print(f"image: {seen['kind']}, {seen['view_ground_m']:.0f} m view at GSD {seen['gsd_given_m']:.2f} m"
                  + (f", place {seen['place'][0]:.5f},{seen['place'][1]:.5f}" if seen["place"] else ", no place"),
                  file=sys.stderr)
        elif args.text is not None:
            vector = embedder.embed_texts([args.text])[0]
        elif at is not None:
            vector = embedder.embed_place(at[0], at[1], args.zoom, hour=args.hour, month=args.month,
                                          audio_source=args.audio_source, use_location=not args.no_location)
        else:
            from core.data.audio_io import load_query_clip

            wave = load_query_clip(args.audio, embedder.cfg.audio)
            vector = embedder.embed_audio([wave])[0]
        hits = gallery.search(vector, k=args.k, kind=args.kind)
        if args.json:
            print(json.dumps([dataclasses.asdict(h) for h in hits], indent=2))
        else:
            _print_hits(hits)
        if args.play_out is not None and hits:
            data, fmt = gallery.clip(hits[0].id)
            out = args.play_out if args.play_out.suffix else args.play_out.with_suffix("." + fmt)
            if out.suffix.lstrip(".").lower() != fmt:
                print(f"note: the clip is {fmt}; writing it as {out} unchanged", file=sys.stderr)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            print(f"top clip ({fmt}, {len(data) / 1024:.0f} KB) -> {out}")
    return 0


def _print_hits(hits) -> None:
    print(f"{'#':>2}  {'score':>6}  {'id':<10}  {'zoom':>4}  {'lat,lon':<17}  caption")
    for n, h in enumerate(hits, start=1):
        where = f"{h.lat:.3f},{h.lon:.3f}" if h.lat is not None and h.lon is not None else "-"
        caption = h.caption if len(h.caption) <= 100 else h.caption[:97] + "..."
        print(f"{n:>2}  {h.score:6.3f}  {h.id[:10]:<10}  {h.zoom if h.zoom is not None else '-':>4}  {where:<17}  "
              f"{caption}")


# ---------------------------------------------------------------------------------------------------- info


def _info(args: argparse.Namespace) -> int:
    from gallery.query import Gallery

    with Gallery.open(args.gallery, verify="full" if args.verify else "quick") as gallery:
        meta = gallery.meta
        print(f"gallery {args.gallery}: {len(gallery)} items, {gallery.dim}-d, model {gallery.fingerprint[:12]}, "
              f"schema {meta['schema_version']}, clips {meta.get('clip_format')} {meta.get('sample_rate')} Hz, "
              f"renderer {meta.get('renderer')}")
        params = gallery.index_info.get("params", {})
        library = f"{params.get('index')} {params.get('version') or ''} {params.get('dtype')}".replace("  ", " ")
        print(f"index {library} M={params.get('M')} ef_construction={params.get('ef_construction')} "
              f"ef={params.get('ef')} search mode={params.get('mode')} (target recall@10 "
              f"{params.get('target_recall')})" + ("; searched exactly here (library not installed)"
                                                    if gallery.missing_library else ""))
        for key in ("created", "updated", "checkpoint", "caption_source", "preset"):
            if key in meta:
                print(f"{key}: {meta[key]}")
        if args.verify:
            print("verify: integrity_check ok, every clip matches its checksum and decodes")
    return 0
