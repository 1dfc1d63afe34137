"""A stand-in for a local FLAN-T5 folder, written offline: a random T5 encoder + a sentencepiece tokenizer.

Tests use small ones; the published-model benchmark writes one with FLAN-T5-large's geometry (d_model 1024, 24
layers, 16 heads, gated-GELU FFN 2816) to time the text tower without the real weights.

The folder looks like a Hugging Face T5 folder: ``config.json`` + ``model.safetensors`` from
``T5EncoderModel.save_pretrained``, and ``spiece.model`` + ``tokenizer.json`` + ``tokenizer_config.json`` from a
unigram sentencepiece model trained here on generated captions, with T5's special ids (pad 0, eos 1, unk 2, no bos).
Everything is seeded, so the same arguments give the same files; nothing touches the network.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

SOUNDS = ("birds", "wind", "waves", "cars", "people", "dogs", "rain", "bells", "frogs", "thunder", "engines",
          "trains", "children", "crickets", "water", "leaves", "sheep", "cows", "tractors", "seagulls", "boats")
VERBS = ("sing", "rustle", "crash", "pass", "talk", "bark", "fall", "ring", "croak", "roll", "hum", "rattle",
         "play", "chirp", "flow", "crunch", "bleat", "moo", "plough", "cry", "creak")
PLACES = ("in the trees", "on a sandy beach", "on a busy road", "in a crowded market", "far away", "on the roofs",
          "near a pond", "over the hills", "along the railway", "at night", "in a stream", "in the forest",
          "over the harbour", "in a farm field", "downtown", "by the river")
FILLERS = ("softly", "loudly", "now and then", "in the distance", "all around", "while", "and", "with")


def captions(n: int = 400, seed: int = 0) -> list[str]:
    """``n`` caption-like sentences ("the sound of birds sing near a pond and rain ...")."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = ["the sound of" if rng.random() < 0.3 else "we hear"]
        for _ in range(rng.randint(1, 3)):
            parts += [rng.choice(SOUNDS), rng.choice(VERBS), rng.choice(PLACES), rng.choice(FILLERS)]
        out.append(" ".join(parts[:-1]))
    return out


def train_spiece(vocab: int = 128, seed: int = 0) -> bytes:
    """A unigram sentencepiece model with T5's ids: <pad> 0, </s> 1, <unk> 2 and no <s>."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions(seed=seed)), model_writer=buf, vocab_size=vocab, model_type="unigram",
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
        shuffle_input_sentence=False, minloglevel=2,
    )
    return buf.getvalue()


def write_t5_folder(dir: str | Path, d_model: int = 32, layers: int = 2, heads: int = 2, d_ff: int = 64,
                    vocab: int = 128, seed: int = 0, extra_ids: int = 0) -> Path:
    """Write a small random ``T5EncoderModel`` and its tokenizer into ``dir``; returns the folder.

    ``vocab`` is the sentencepiece vocabulary asked for (the model gets one embedding per tokenizer token, rounded
    up to a multiple of 8 like the real 32128); ``seed`` sets both the tokenizer's training and the weights.
    """
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(train_spiece(vocab, seed))
    tokenizer = T5Tokenizer.from_pretrained(folder, extra_ids=extra_ids, model_max_length=512, local_files_only=True)
    tokenizer.save_pretrained(folder)
    config = T5Config(vocab_size=-(-len(tokenizer) // 8) * 8, d_model=d_model, d_kv=max(d_model // heads, 1),
                      d_ff=d_ff, num_layers=layers, num_heads=heads, feed_forward_proj="gated-gelu",
                      dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = T5EncoderModel(config)
    model.eval().save_pretrained(folder)
    return folder
