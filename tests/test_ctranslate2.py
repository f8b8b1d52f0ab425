"""CTranslate2 backend: `mediamon models convert` on the tiny random Marian model (tests/tiny_marian.py),
then the real stage (chunking, cache, provenance) through ctranslate2 + sentencepiece, and proof
that translating needs no torch (a subprocess that never imports it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")

from pipeline.models import Article  # noqa: E402
from pipeline.store.sqlite import SQLiteStore  # noqa: E402
from pipeline.translate import chunk_text, clear_translator_cache, get_translator, translate_stage  # noqa: E402
from pipeline.translate.ctranslate2 import CT2Translator  # noqa: E402

from .conftest import make_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
LONG_RU = (
    "Президент провёл совещание с членами Совета безопасности. "
    "Министр обороны доложил, что размещение комплексов «Орешник» в Белоруссии завершится в декабре. "
    "Средства противовоздушной обороны перехватили ракеты и беспилотники ночью над Черным морем! "
    "Расчёты ракетных комплексов «Искандер-М» отработали электронные пуски. "
    "Стратегические ядерные силы провели плановую тренировку с пусками баллистических ракет. "
    "Курс рубля вырос на торгах в понедельник, сообщила Московская биржа. "
) * 2


def art(aid: str, title: str, summary: str = "", language: str | None = "ru", content: str | None = None) -> Article:
    return Article(id=aid, feed_id="f", url=None, canonical_url=None, guid=None, source="Test",
                   feed_language=language, language=language, title=title, summary=summary, content=content,
                   published_at=NOW, fetched_at=NOW, content_hash=aid)


def _cli(args):
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def ct2_dir(tiny_marian_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ct2") / "tiny-ct2"
    res = _cli(["models", "convert", str(tiny_marian_dir), str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def settings_ct2(tmp_path, ct2_dir):
    return make_settings(tmp_path, translation_backend="ctranslate2", translation_model=str(ct2_dir),
                         translation_batch_size=4)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh_translators():
    clear_translator_cache()
    yield
    clear_translator_cache()


def test_convert_writes_a_self_contained_directory(ct2_dir, tiny_marian_dir):
    names = {p.name for p in ct2_dir.iterdir()}
    assert {"model.bin", "config.json", "source.spm", "target.spm", "vocab.json", "mediamon.json"} <= names
    meta = json.loads((ct2_dir / "mediamon.json").read_text())
    assert meta["source"] == str(Path(tiny_marian_dir).resolve())
    assert meta["quantization"] == "int8" and meta["max_input_tokens"] == 127  # 128 positions - </s>
    # a second conversion into the same directory needs --force
    res = _cli(["models", "convert", str(tiny_marian_dir), str(ct2_dir)])
    assert res.exit_code == 1 and "not empty" in " ".join(res.output.split())
    assert "Example:" in _cli(["models", "convert", "--help"]).output


def test_tokenization_matches_the_marian_tokenizer(settings_ct2, tiny_marian_dir):
    """Chunk sizes are measured in the same tokens as the transformers backend."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_marian_dir))
    tr = get_translator(settings_ct2)
    texts = ["Россия может разместить ракетный комплекс «Орешник».", "Air defences intercepted drones.", "x" * 40]
    assert tr.count_tokens(texts) == [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    assert tr.tokenize(texts[:1])[0] == tok.convert_ids_to_tokens(tok(texts[0], add_special_tokens=False)["input_ids"])


def test_stage_translates_with_provenance_chunking_and_cache(tmp_path, settings_ct2, ct2_dir):
    tr = get_translator(settings_ct2)
    assert isinstance(tr, CT2Translator)
    assert tr.model_id == f"ctranslate2:int8:{ct2_dir.resolve()}"
    items = [art("ru1", "Курс рубля вырос на торгах", LONG_RU, content="Полный текст статьи. " * 5),
             art("ru2", "Курс рубля вырос на торгах", "Торги прошли спокойно."),
             art("en1", "Drones intercepted", "Over the sea.", language="en")]
    path = tmp_path / "cache.sqlite3"
    s1 = SQLiteStore(path)
    before = tr.stats["inputs"]
    out, c1 = translate_stage(items, settings=settings_ct2, store=s1)
    s1.close()
    translated_inputs = tr.stats["inputs"] - before
    ru1, ru2, en1 = out
    assert ru1.translation.status == "ok" and ru1.translation.model == tr.model_id
    assert ru1.title_en and ru1.summary_en and ru1.content_en
    assert en1.translation.status == "skipped" and en1.title_en == en1.title
    # the long summary went in several chunks, each within the model's limit
    chunks = chunk_text(LONG_RU.strip(), tr.count_tokens, tr.chunk_tokens).texts
    assert len(chunks) > 1 and max(tr.count_tokens(list(chunks))) <= tr.chunk_tokens
    assert ru1.summary_en == " ".join(tr.translate_batch(list(chunks)))
    # the shared title was translated once; every unique chunk exactly once
    unique = {t for a in items[:2] for f in (a.title, a.summary, a.content or "")
              for t in chunk_text(f, tr.count_tokens, tr.chunk_tokens).texts}
    assert translated_inputs == len(unique) == c1["translation_chunks"]
    assert ru1.title_en == ru2.title_en == tr.translate_batch([ru1.title])[0]

    after_first = tr.stats["inputs"]
    s2 = SQLiteStore(path)  # next run: everything comes from the cache
    again, c2 = translate_stage(items, settings=settings_ct2, store=s2)
    s2.close()
    assert tr.stats["inputs"] == after_first
    assert c2["translation_cached"] == 2 and "translated" not in c2
    assert [(a.title_en, a.summary_en, a.content_en, a.translation) for a in again] == \
        [(a.title_en, a.summary_en, a.content_en, a.translation) for a in out]


def test_cache_ids_differ_by_backend_and_quantization(tmp_path, ct2_dir, tiny_marian_dir):
    int8 = get_translator(make_settings(tmp_path, translation_backend="ctranslate2", translation_model=str(ct2_dir)))
    f32 = get_translator(make_settings(tmp_path, translation_backend="ctranslate2", translation_model=str(ct2_dir),
                                       translation_compute_type="float32"))
    hf = get_translator(make_settings(tmp_path, translation_backend="transformers",
                                      translation_model=str(tiny_marian_dir)))
    assert len({int8.cache_id, f32.cache_id, hf.cache_id}) == 3
    assert f32.model_id.startswith("ctranslate2:float32:")


def test_float32_output_matches_transformers_greedy(tmp_path, tmp_path_factory):
    """Same weights, same greedy decoding and length budgets: the same text as transformers' generate.
    (Smaller random weights than the shared tiny model, whose large activations let fp32 rounding
    differences between the two libraries flip near-ties.)"""
    from .tiny_marian import build_marian_dir

    base = tmp_path_factory.mktemp("tiny-marian-01")
    hf_dir = build_marian_dir(base / "hf", max_positions=128, d_model=32, ffn=64, init_std=0.1)
    res = _cli(["models", "convert", str(hf_dir), str(base / "ct2"), "-q", "float32"])
    assert res.exit_code == 0, res.output
    ct2 = get_translator(make_settings(tmp_path, translation_backend="ctranslate2", translation_model=str(base / "ct2"),
                                       translation_compute_type="float32", translation_num_beams=1))
    hf = get_translator(make_settings(tmp_path, translation_backend="transformers", translation_model=str(hf_dir),
                                      translation_num_beams=1))
    texts = ["Россия может разместить ракетный комплекс «Орешник» в Белоруссии.",
             "Курс рубля вырос на торгах в понедельник.", "Air defences intercepted missiles overnight.",
             "Стратегические ядерные силы провели плановую тренировку с пусками баллистических ракет."]
    assert ct2.translate_batch(texts) == hf.translate_batch(texts)


def test_overlong_input_is_refused_not_truncated(settings_ct2):
    from pipeline.errors import TranslationFailed

    tr = get_translator(settings_ct2)
    long = " ".join(["ракета"] * 300)
    assert tr.count_tokens([long])[0] > tr.max_input_tokens
    with pytest.raises(TranslationFailed, match="exceeds the model limit"):
        tr.translate_batch([long])


def test_unconverted_or_missing_model_is_unavailable_with_the_fix(tmp_path, store, tiny_marian_dir):
    for model in (str(tiny_marian_dir), str(tmp_path / "nope")):
        s = make_settings(tmp_path, translation_backend="ctranslate2", translation_model=model)
        out, counts = translate_stage([art("a", "Ракеты")], settings=s, store=store)
        assert counts["translation_unavailable"] == 1
        assert out[0].translation.status == "unavailable"
        assert "mediamon models convert" in out[0].translation.error


def test_runtime_does_not_import_torch(ct2_dir, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from datetime import datetime, timezone
        from pipeline.models import Article
        from pipeline.settings import Settings
        from pipeline.store.sqlite import SQLiteStore
        from pipeline.translate import translate_stage
        now = datetime.now(timezone.utc)
        a = Article(id="a", feed_id="f", url=None, canonical_url=None, guid=None, source="s", feed_language="ru",
                    language="ru", title="Ракеты перехвачены над морем.", summary="Учения прошли.", published_at=now,
                    fetched_at=now, content_hash="a")
        s = Settings(translation_backend="ctranslate2", translation_model={str(ct2_dir)!r},
                     data_dir={str(tmp_path)!r})
        out, counts = translate_stage([a], settings=s, store=SQLiteStore(":memory:"))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print(json.dumps({{"status": out[0].translation.status, "model": out[0].translation.model,
                          "title_en": out[0].title_en, "heavy": heavy}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["status"] == "ok" and got["model"].startswith("ctranslate2:int8:") and got["title_en"]
    assert got["heavy"] == []
