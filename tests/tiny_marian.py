"""Build a real MarianMT model directory on the fly (no hub): a SentencePiece vocabulary
trained on a few Russian and English lines, a ``MarianTokenizer`` over it, and a
``MarianMTModel`` with random weights saved with ``save_pretrained``.

The weights are random, so the output is gibberish; everything else (loading with
``AutoTokenizer``/``AutoModelForSeq2SeqLM``, tokenising, batching, ``generate``,
decoding) is the real code path.  ``bench/translate.py`` reuses it with the
opus-mt-ru-en architecture.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path


CORPUS = """\
Россия может разместить ракетный комплекс «Орешник» в Белоруссии до конца года.
Министр обороны заявил, что размещение комплексов завершится в декабре.
Средства противовоздушной обороны перехватили ракеты и беспилотники ночью.
Президент В. В. Путин провёл совещание с членами Совета безопасности.
Расчёты ракетных комплексов «Искандер-М» отработали электронные пуски, т.е. учебные.
Курс рубля вырос на торгах в понедельник, сообщила Московская биржа.
В 2024 г. бюджет на оборону составил 10,8 трлн руб., или 6,3% ВВП.
Стратегические ядерные силы провели плановую тренировку с пусками баллистических ракет.
Russia may deploy the Oreshnik missile system in Belarus by the end of the year.
The defence minister said the deployment would be completed in December.
Air defences intercepted missiles and drones overnight over the Black Sea.
Strategic nuclear forces held a scheduled exercise with ballistic missile launches.
"""


def build_marian_dir(out: Path, *, vocab_size: int = 400, config_vocab_size: int | None = None,
                     d_model: int = 16, layers: int = 1, heads: int = 2, ffn: int = 32,
                     max_positions: int = 64, seed: int = 0, init_std: float = 0.5, corpus: str = CORPUS) -> Path:
    """Write a loadable Marian model directory to ``out`` and return it.

    ``config_vocab_size`` larger than the trained SentencePiece vocabulary gives the
    embedding/output layers a realistic size (ids beyond the vocab decode as <unk>)."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out.mkdir(parents=True, exist_ok=True)
    text = out / "corpus.txt"
    text.write_text(corpus, encoding="utf-8")
    # Marian convention: </s> = 0, <unk> = 1, <pad> = last id (added to vocab.json below)
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "spm"), vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, eos_id=0, unk_id=1, bos_id=-1, pad_id=-1, hard_vocab_limit=False,
        minloglevel=2, num_threads=1)
    text.unlink()
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    pad_id = len(vocab)
    vocab["<pad>"] = pad_id
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        (out / name).write_bytes((out / "spm.model").read_bytes())
    for suffix in ("model", "vocab"):
        (out / f"spm.{suffix}").unlink()

    warnings.filterwarnings("ignore", message=".*sacremoses.*")
    tok = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                          vocab=str(out / "vocab.json"), model_max_length=max_positions)
    n_vocab = max(config_vocab_size or 0, pad_id + 1)
    if config_vocab_size:  # a realistic vocab.json: filler words up to the size, <pad> last like opus-mt
        del vocab["<pad>"]
        vocab.update({f"▁w{i}": i for i in range(len(vocab), n_vocab - 1)})
        pad_id = n_vocab - 1
        vocab["<pad>"] = pad_id
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tok = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                              vocab=str(out / "vocab.json"), model_max_length=max_positions)
    config = MarianConfig(
        vocab_size=n_vocab, decoder_vocab_size=n_vocab, d_model=d_model, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_position_embeddings=max_positions,
        pad_token_id=pad_id, decoder_start_token_id=pad_id, eos_token_id=0, forced_eos_token_id=0,
        scale_embedding=True, activation_function="swish", init_std=init_std)
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    model.generation_config.bad_words_ids = [[pad_id]]
    model.generation_config.num_beams = 1
    model.generation_config.max_length = max_positions
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
