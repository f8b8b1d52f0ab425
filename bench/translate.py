"""Translate-stage throughput with an opus-mt-ru-en-sized Marian model (random weights).

Builds a model with the architecture of Helsinki-NLP/opus-mt-ru-en (d_model 512, 6+6 layers,
8 heads, FFN 2048, vocabulary 62,518) from a SentencePiece vocabulary trained on a few lines
(tests/tiny_marian.py), converts it to CTranslate2 int8 (`mediamon models convert`), then runs
**our** translate stage (chunking, cache lookups, batching, provenance; fresh in-memory store, so
nothing is cached) on unique ~48-token inputs with the output forced to a fixed length and greedy
decoding, so runs are comparable:

    one        transformers, one item per generate call
    batched    transformers, batches of --batch-size
    ct2        CTranslate2 int8 through translate_stage (batches of --batch-size)
    ct2_raw    CTranslate2 int8 ``Translator.translate_batch`` on pre-tokenized inputs, same batches
               and decoding options: the library alone, for reference (our overhead = 1 - ct2/ct2_raw)

Each mode runs in its own process so peak RSS is per backend (the ct2 processes never import torch).

Usage: python bench/translate.py [--items-one 16] [--items-batched 64] [--batch-size 16] [--modes ...]
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

MODES = ("one", "batched", "ct2", "ct2_raw")
OPUS_MT_RU_EN = dict(config_vocab_size=62518, d_model=512, layers=6, heads=8, ffn=2048, max_positions=512,
                     init_std=0.02)


def peak_rss_mb() -> float:
    """Peak RSS of this process.  VmHWM belongs to the process image (ru_maxrss survives exec, so a
    child started from a big parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
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
    if args.mode in ("ct2", "ct2_raw"):
        return child_ct2(args)
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
    bs = 1 if args.mode == "one" else args.batch_size
    out, counts, secs = timed_stage(tr, texts, "transformers", args.model_dir, bs)
    src = tr.count_tokens(texts[2:])
    out_tok = [len(tr.tokenizer(a.title_en, add_special_tokens=False)["input_ids"]) for a in out]
    return {"mode": args.mode, "items": n, "batch_size": bs, "seconds": round(secs, 3),
            "items_s": round(n / secs, 3), "device": tr.device, "peak_rss_mb": round(peak_rss_mb(), 1),
            "load_s": round(load_s, 2),
            "mean_source_tokens": round(sum(src) / len(src), 1), "generate_calls": counts.get("translation_batches"),
            "mean_output_pieces": round(sum(out_tok) / len(out_tok), 1)}


def timed_stage(tr, texts: list[str], backend: str, model: str, bs: int):
    """``translate_stage`` over ``texts`` as Articles with ``tr`` (the first two: an untimed warm-up);
    (articles, counts, seconds)."""
    from datetime import datetime, timezone

    from pipeline.models import Article
    from pipeline.settings import Settings
    from pipeline.store.sqlite import SQLiteStore
    from pipeline.translate import translate_stage

    now = datetime.now(timezone.utc)
    arts = [Article(id=f"b{i}", feed_id="bench", url=None, canonical_url=None, guid=None, source="bench",
                    feed_language="ru", language="ru", title=t, summary="", published_at=now, fetched_at=now,
                    content_hash=str(i)) for i, t in enumerate(texts)]
    settings = Settings(translation_backend=backend, translation_model=model, translation_batch_size=bs,
                        data_dir=Path(tempfile.gettempdir()))
    store = SQLiteStore(":memory:")
    translate_stage(arts[:2], settings=settings, store=store, translator=tr)  # warm-up, not timed
    t0 = time.perf_counter()
    out, counts = translate_stage(arts[2:], settings=settings, store=store, translator=tr)
    secs = time.perf_counter() - t0
    n = len(texts) - 2
    assert counts.get("translated") == n and all(a.translation.status == "ok" for a in out), counts
    return out, counts, secs


def child_ct2(args) -> dict:
    """CTranslate2 int8: through translate_stage (mode ct2) or raw translate_batch (ct2_raw)."""
    from pipeline.translate.ctranslate2 import CT2Translator

    t0 = time.perf_counter()
    fixed = {"min_decoding_length": args.out_tokens, "max_decoding_length": args.out_tokens}
    tr = CT2Translator.load(args.ct2_dir, device=args.device, num_beams=1, compute_type=args.compute_type,
                            threads=args.threads, decode_overrides=fixed)
    load_s = time.perf_counter() - t0
    n = args.items
    texts = make_texts(tr.count_tokens, n + 2, args.in_tokens, seed=2)  # the batched run's inputs
    bs = args.batch_size
    if args.mode == "ct2":
        out, counts, secs = timed_stage(tr, texts, "ctranslate2", args.ct2_dir, bs)
        out_tok = [len(tr.tokenize([a.title_en])[0]) for a in out]
        calls = counts.get("translation_batches")
    else:
        opts = {"beam_size": 1, "no_repeat_ngram_size": tr.no_repeat_ngram_size, "max_input_length": 0, **fixed}
        src = [toks + ["</s>"] for toks in tr.tokenize(texts)]
        tr.translator.translate_batch(src[:2], **opts)  # warm-up, not timed
        src = src[2:]
        t0 = time.perf_counter()
        hyps = []
        for start in range(0, n, bs):
            hyps += [r.hypotheses[0] for r in tr.translator.translate_batch(src[start:start + bs], **opts)]
        secs = time.perf_counter() - t0
        out_tok = [len(h) for h in hyps]
        calls = -(-n // bs)
    src_n = tr.count_tokens(texts[2:])
    return {"mode": args.mode, "items": n, "batch_size": bs, "seconds": round(secs, 3),
            "items_s": round(n / secs, 3), "device": tr.device, "compute_type": args.compute_type,
            "effective_compute_type": getattr(tr.translator, "compute_type", None),
            "peak_rss_mb": round(peak_rss_mb(), 1), "load_s": round(load_s, 2),
            "mean_source_tokens": round(sum(src_n) / len(src_n), 1), "translate_batch_calls": calls,
            "mean_output_pieces": round(sum(out_tok) / len(out_tok), 1),
            "torch_imported": "torch" in sys.modules}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items-one", type=int, default=16, help="items for the one-at-a-time run")
    ap.add_argument("--items-batched", type=int, default=64, help="items for the batched run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--in-tokens", type=int, default=48, help="source tokens per item (at least)")
    ap.add_argument("--out-tokens", type=int, default=40, help="forced output length (new tokens)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--items-ct2", type=int, default=0, help="items for the CTranslate2 runs (default: 2x batched)")
    ap.add_argument("--compute-type", default="int8", help="CTranslate2 compute type")
    ap.add_argument("--modes", default="one,batched,ct2,ct2_raw", help="comma-separated subset to run")
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--ct2-dir", help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help="reuse a model directory instead of building one")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return

    import platform

    modes = [m for m in args.modes.split(",") if m]
    items = {"one": args.items_one, "batched": args.items_batched, "ct2": args.items_ct2 or 2 * args.items_batched,
             "ct2_raw": args.items_ct2 or 2 * args.items_batched}
    with tempfile.TemporaryDirectory(prefix="mediamon-bench-") as tmp:
        t0 = time.perf_counter()
        if args.model_dir is None:
            from tiny_marian import build_marian_dir

            args.model_dir = str(build_marian_dir(Path(tmp) / "opus-mt-ru-en-random", vocab_size=400,
                                                  **OPUS_MT_RU_EN))
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ct2_dir = str(Path(tmp) / "opus-mt-ru-en-random-ct2")
        if any(m.startswith("ct2") for m in modes):
            subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "convert", args.model_dir, ct2_dir,
                            "-q", args.compute_type], check=True, capture_output=True, cwd=ROOT)
        convert_s = time.perf_counter() - t0
        runs = {}
        for mode in modes:
            cmd = [sys.executable, __file__, "--mode", mode, "--items", str(items[mode]), "--model-dir", args.model_dir,
                   "--ct2-dir", ct2_dir, "--compute-type", args.compute_type,
                   "--batch-size", str(args.batch_size), "--in-tokens", str(args.in_tokens),
                   "--out-tokens", str(args.out_tokens), "--device", args.device, "--threads", str(args.threads)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    import torch

    def rate(mode: str) -> float | None:
        return runs[mode]["items_s"] if mode in runs else None

    def ratio(a: str, b: str) -> float | None:
        return round(runs[a]["items_s"] / runs[b]["items_s"], 2) if a in runs and b in runs else None

    print(json.dumps({
        "model": "opus-mt-ru-en architecture, random weights (d_model 512, 6+6 layers, 8 heads, FFN 2048, "
                 "vocab 62518)",
        "decoding": f"greedy, no_repeat_ngram_size=4, forced {args.out_tokens} new tokens",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"torch {torch.__version__} threads {torch.get_num_threads()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "transformers_one_by_one_items_s": rate("one"),
        "transformers_batched_items_s": rate("batched"),
        "ctranslate2_int8_items_s": rate("ct2"),
        "ctranslate2_raw_items_s": rate("ct2_raw"),
        "speedup_batched": ratio("batched", "one"),
        "speedup_ct2_vs_batched": ratio("ct2", "batched"),
        "ct2_stage_vs_raw": ratio("ct2", "ct2_raw"),
        "peak_rss_mb": {m: r["peak_rss_mb"] for m, r in runs.items()},
        "build_model_s": round(build_s, 1),
        "convert_s": round(convert_s, 1),
        "runs": runs,
    }, indent=None))


if __name__ == "__main__":
    main()
