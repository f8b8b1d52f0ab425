"""Translate-stage throughput with an opus-mt-ru-en-sized Marian model (random weights).

Builds a model with the architecture of Helsinki-NLP/opus-mt-ru-en (d_model 512, 6+6 layers,
8 heads, FFN 2048, vocabulary 62,518) from a SentencePiece vocabulary trained on a few lines
(tests/tiny_marian.py), then runs **our** translate stage (chunking, cache lookups, batching,
provenance; fresh in-memory store, so nothing is cached) on unique ~48-token inputs with the
output forced to a fixed length (min_new_tokens = max_new_tokens) and greedy decoding, so runs
are comparable.  Each mode runs in its own process so peak RSS is per mode.

Usage: python bench/translate.py [--items-one 16] [--items-batched 64] [--batch-size 16]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OPUS_MT_RU_EN = dict(config_vocab_size=62518, d_model=512, layers=6, heads=8, ffn=2048, max_positions=512,
                     init_std=0.02)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_texts(count_tokens, n: int, tokens: int, seed: int) -> list[str]:
    from tiny_marian import CORPUS

    words = CORPUS.split()
    rng = random.Random(seed)
    texts = []
    while len(texts) < n:
        ws: list[str] = []
        while not ws or count_tokens([" ".join(ws)])[0] < tokens:
            ws.append(rng.choice(words))
        texts.append(" ".join(ws))
    return texts


def child(args) -> dict:
    from datetime import datetime, timezone

    from pipeline.models import Article
    from pipeline.settings import Settings
    from pipeline.store.sqlite import SQLiteStore
    from pipeline.translate import translate_stage
    from pipeline.translate.marian import MarianTranslator

    t0 = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tr = MarianTranslator.load(args.model_dir, device=args.device, num_beams=1, generate_overrides={
        "min_new_tokens": args.out_tokens, "max_new_tokens": args.out_tokens})
    load_s = time.perf_counter() - t0
    n = args.items
    texts = make_texts(tr.count_tokens, n + 2, args.in_tokens, seed=1 if args.mode == "one" else 2)
    now = datetime.now(timezone.utc)
    arts = [Article(id=f"b{i}", feed_id="bench", url=None, canonical_url=None, guid=None, source="bench",
                    feed_language="ru", language="ru", title=t, summary="", published_at=now, fetched_at=now,
                    content_hash=str(i)) for i, t in enumerate(texts)]
    bs = 1 if args.mode == "one" else args.batch_size
    settings = Settings(translation_backend="transformers", translation_model=args.model_dir,
                        translation_batch_size=bs, data_dir=Path(tempfile.gettempdir()))
    store = SQLiteStore(":memory:")
    translate_stage(arts[:2], settings=settings, store=store, translator=tr)  # warm-up, not timed
    t0 = time.perf_counter()
    out, counts = translate_stage(arts[2:], settings=settings, store=store, translator=tr)
    secs = time.perf_counter() - t0
    assert counts.get("translated") == n and all(a.translation.status == "ok" for a in out[:n]), counts
    src = tr.count_tokens(texts[2:])
    out_tok = [len(tr.tokenizer(a.title_en, add_special_tokens=False)["input_ids"]) for a in out]
    return {"mode": args.mode, "items": n, "batch_size": bs, "seconds": round(secs, 3),
            "items_s": round(n / secs, 3), "device": tr.device, "peak_rss_mb": round(peak_rss_mb(), 1), "load_s": round(load_s, 2),
            "mean_source_tokens": round(sum(src) / len(src), 1), "generate_calls": counts.get("translation_batches"),
            "mean_output_pieces": round(sum(out_tok) / len(out_tok), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items-one", type=int, default=16, help="items for the one-at-a-time run")
    ap.add_argument("--items-batched", type=int, default=64, help="items for the batched run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--in-tokens", type=int, default=48, help="source tokens per item (at least)")
    ap.add_argument("--out-tokens", type=int, default=40, help="forced output length (new tokens)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--mode", choices=["one", "batched"], help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help="reuse a model directory instead of building one")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return

    import platform

    with tempfile.TemporaryDirectory(prefix="mediamon-bench-") as tmp:
        t0 = time.perf_counter()
        if args.model_dir is None:
            from tiny_marian import build_marian_dir

            args.model_dir = str(build_marian_dir(Path(tmp) / "opus-mt-ru-en-random", vocab_size=400,
                                                  **OPUS_MT_RU_EN))
        build_s = time.perf_counter() - t0
        runs = {}
        for mode, items in (("one", args.items_one), ("batched", args.items_batched)):
            cmd = [sys.executable, __file__, "--mode", mode, "--items", str(items), "--model-dir", args.model_dir,
                   "--batch-size", str(args.batch_size), "--in-tokens", str(args.in_tokens),
                   "--out-tokens", str(args.out_tokens), "--device", args.device, "--threads", str(args.threads)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    import torch

    one, bat = runs["one"], runs["batched"]
    print(json.dumps({
        "model": "opus-mt-ru-en architecture, random weights (d_model 512, 6+6 layers, 8 heads, FFN 2048, "
                 "vocab 62518)",
        "decoding": f"greedy, no_repeat_ngram_size=4, forced {args.out_tokens} new tokens",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"torch {torch.__version__} threads {torch.get_num_threads()}",
        "transformers_one_by_one_items_s": one["items_s"],
        "transformers_batched_items_s": bat["items_s"],
        "speedup_batched": round(bat["items_s"] / one["items_s"], 2),
        "transformers_one_by_one_peak_rss_mb": one["peak_rss_mb"],
        "transformers_batched_peak_rss_mb": bat["peak_rss_mb"],
        "build_model_s": round(build_s, 1),
        "runs": runs,
    }, indent=None))


if __name__ == "__main__":
    main()
