"""Translation: the real loading, chunking, batching and caching code on a tiny random Marian model
(tests/tiny_marian.py), a real SQLite store, the CLI and the unavailable-model path."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.models import Article
from pipeline.sentences import split_sentences
from pipeline.store.sqlite import SQLiteStore
from pipeline.translate import (chunk_text, clear_translator_cache, get_translator, looks_suspicious, model_for,
                                text_key, translate_stage)

from .conftest import FEED_FIXTURES, make_settings, write_feeds_yaml

MAX_POSITIONS = 128  # tiny model: 127 source tokens + </s>
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

LONG_RU = (
    "Президент В. В. Путин провёл совещание с членами Совета безопасности. "
    "Министр обороны доложил, что размещение комплексов «Орешник» в Белоруссии завершится в декабре, т.е. до конца года. "
    "В 2024 г. бюджет на оборону составил 10,8 трлн руб. и вырос на 3.5% за год. "
    "Средства противовоздушной обороны перехватили ракеты и беспилотники ночью над Черным морем! "
    "Расчёты ракетных комплексов «Искандер-М» отработали электронные пуски. "
    "Стратегические ядерные силы провели плановую тренировку с пусками баллистических ракет. "
    "Курс рубля вырос на торгах в понедельник, сообщила Московская биржа."
)


def art(aid: str, title: str, summary: str = "", language: str | None = "ru", content: str | None = None) -> Article:
    return Article(id=aid, feed_id="f", url=None, canonical_url=None, guid=None, source="Test",
                   feed_language=language, language=language, title=title, summary=summary, content=content,
                   published_at=NOW, fetched_at=NOW, content_hash=aid)


@pytest.fixture
def settings_tiny(tmp_path, tiny_marian_dir):
    return make_settings(tmp_path, translation_backend="transformers", translation_model=str(tiny_marian_dir),
                         translation_batch_size=4)


@pytest.fixture
def translator(settings_tiny):
    return get_translator(settings_tiny)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


@pytest.fixture
def generate_calls(translator, monkeypatch):
    """Record every real ``model.generate`` call: the (unpadded) input lengths of its rows."""
    calls: list[list[int]] = []
    real = translator.model.generate

    def counting(*args, **kwargs):
        calls.append([int(n) for n in kwargs["attention_mask"].sum(dim=1)])
        return real(*args, **kwargs)

    monkeypatch.setattr(translator.model, "generate", counting)
    return calls


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def mediamon_logs():
    """Every record of the ``mediamon`` loggers, whatever the CLI tests did to propagation."""
    logger = logging.getLogger("mediamon")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


# --- sentences and chunks -----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Президент В. В. Путин заявил об этом в 2024 г. Россия ответит. Т.е. всё.",
     ["Президент В. В. Путин заявил об этом в 2024 г. Россия ответит.", "Т.е. всё."]),
    ("Путин В.В. заявил, что рост составил 3.5%, т.е. меньше плана, и т. д. Затем выступил Шойгу!",
     ["Путин В.В. заявил, что рост составил 3.5%, т.е. меньше плана, и т. д.", "Затем выступил Шойгу!"]),
    ("«Куда?» — спросил он. «Туда», ответили ему… Потом ушли.",
     ["«Куда?» — спросил он.", "«Туда», ответили ему…", "Потом ушли."]),
    ("Дата 12.03.2026. Потрачено 5 млн. руб. на ремонт ул. Ленина. Итог: 10.",
     ["Дата 12.03.2026.", "Потрачено 5 млн. руб. на ремонт ул. Ленина.", "Итог: 10."]),
    ("Mr. Smith met U.S. officials. He left.\nВторой абзац без точки",
     ["Mr. Smith met U.S. officials.", "He left.", "Второй абзац без точки"]),
    ("Яблоки, груши и т.д. и т.п. в магазине.", ["Яблоки, груши и т.д. и т.п. в магазине."]),
    ("   ", []),
])
def test_split_sentences_russian_aware(text, expected):
    assert split_sentences(text) == expected


def test_chunks_fit_the_model_end_at_sentences_and_lose_nothing(translator):
    sentences = split_sentences(LONG_RU)
    chunks = chunk_text(LONG_RU, translator.count_tokens, translator.chunk_tokens)
    assert translator.chunk_tokens == MAX_POSITIONS - 1
    assert len(chunks.texts) > 1 and not chunks.truncated
    tok = translator.tokenizer
    for c in chunks.texts:  # measured with the real tokenizer, end-of-sequence included
        assert len(tok(c)["input_ids"]) <= MAX_POSITIONS
    # chunks are runs of whole sentences, in order, nothing dropped
    assert " ".join(chunks.texts) == " ".join(sentences)
    i = 0
    for c in chunks.texts:
        j = i
        while " ".join(sentences[i:j]) != c:
            j += 1
            assert j <= len(sentences), f"chunk does not end at a sentence boundary: {c!r}"
        # greedy: the next sentence would not have fitted
        if j < len(sentences):
            assert translator.count_tokens([c + " " + sentences[j]])[0] > translator.chunk_tokens
        i = j


def test_overlong_sentence_is_cut_into_pieces_and_flagged(translator):
    words = ("ракетный комплекс Орешник размещение Белоруссия оборона министр учения пуск").split()
    sentence = " ".join(words[i % len(words)] + str(i) for i in range(60))  # one sentence, no punctuation
    assert translator.count_tokens([sentence])[0] > translator.chunk_tokens
    chunks = chunk_text(sentence, translator.count_tokens, translator.chunk_tokens)
    assert chunks.truncated and len(chunks.texts) >= 2
    assert " ".join(chunks.texts) == sentence
    assert all(n <= translator.chunk_tokens for n in translator.count_tokens(chunks.texts))
    # a single "word" longer than the limit is cut by characters, still nothing lost
    blob = "ракетныйкомплекс" * 40
    assert translator.count_tokens([blob])[0] > translator.chunk_tokens
    pieces = chunk_text(blob, translator.count_tokens, translator.chunk_tokens)
    assert pieces.truncated and "".join(pieces.texts) == blob


# --- the stage ------------------------------------------------------------------------------------

def test_stage_translates_non_english_and_records_provenance(settings_tiny, translator, store, tiny_marian_dir):
    items = [
        art("ru1", "Курс рубля вырос на торгах", LONG_RU, content="Полный текст статьи. " * 5),
        art("en1", "Air defences intercepted missiles", "Overnight over the Black Sea.", language="en"),
        art("xx1", "???", "", language=None),
    ]
    out, counts = translate_stage(items, settings=settings_tiny, store=store)
    ru, en, xx = out
    assert ru.translation.status == "ok"
    assert ru.translation.model == str(Path(tiny_marian_dir).resolve())
    assert ru.translation.truncated is False
    assert (ru.translation.error is None) == (ru.translation.suspicious is False)
    assert ru.title_en and ru.summary_en and ru.title_en != ru.title
    # the title is one chunk: its output is what the model gives for it alone
    assert ru.title_en == translator.translate_batch([ru.title])[0]
    assert ru.content == items[0].content
    # content (when present) is translated like the summary: same chunking and cache
    assert ru.content_en and ru.content_en == " ".join(
        translator.translate_batch(list(chunk_text(ru.content, translator.count_tokens, translator.chunk_tokens).texts)))
    assert (en.title_en, en.summary_en, en.translation.status) == (en.title, en.summary, "skipped")
    assert en.content_en is None and xx.content_en is None
    assert xx.translation.status == "skipped" and xx.translation.error == "source language unknown"
    assert counts["translated"] == 1 and counts["translation_skipped"] == 2
    assert counts["translation_chunks"] >= 3  # title + a multi-chunk summary


def test_cache_is_used_across_runs_and_duplicates_are_translated_once(tmp_path, settings_tiny, translator,
                                                                       generate_calls):
    items = [art("a", "Учения с ракетами прошли в Калининграде", LONG_RU),
             art("b", "Учения с ракетами прошли в Калининграде", "Торги прошли спокойно."),
             art("c", "ПВО сбили восемь ракет", "")]
    path = tmp_path / "cache.sqlite3"
    s1 = SQLiteStore(path)
    first, c1 = translate_stage(items, settings=settings_tiny, store=s1)
    s1.close()
    inputs = sum(len(call) for call in generate_calls)
    unique_chunks = {t for a in items for f in (a.title, a.summary)
                     for t in chunk_text(f, translator.count_tokens, translator.chunk_tokens).texts}
    assert inputs == len(unique_chunks) == c1["translation_chunks"]  # the shared title went once
    assert c1["translated"] == 3

    generate_calls.clear()
    s2 = SQLiteStore(path)  # a new run: new connection, same file
    second, c2 = translate_stage(items, settings=settings_tiny, store=s2)
    s2.close()
    assert generate_calls == []
    assert c2["translation_cached"] == 3 and "translated" not in c2
    assert [(a.title_en, a.summary_en, a.translation) for a in second] == \
        [(a.title_en, a.summary_en, a.translation) for a in first]


def test_batches_are_sorted_by_length_and_sized(settings_tiny, store, generate_calls):
    words = "ракета комплекс оборона министр учения пуск биржа рубль торги совещание".split()
    titles = [" ".join(words[: n]) + f" {n}" for n in (9, 1, 5, 3, 7)]
    settings = settings_tiny.model_copy(update={"translation_batch_size": 2})
    out, counts = translate_stage([art(f"t{i}", t) for i, t in enumerate(titles)], settings=settings, store=store)
    assert all(a.translation.status == "ok" for a in out)
    assert [len(c) for c in generate_calls] == [2, 2, 1] and counts["translation_batches"] == 3
    flat = [n for c in generate_calls for n in c]
    assert flat == sorted(flat)


def test_overlong_sentence_sets_truncated_in_provenance(settings_tiny, store):
    sentence = " ".join(f"слово{i}" for i in range(80))
    [a], _ = translate_stage([art("long", "Заголовок", sentence)], settings=settings_tiny, store=store)
    assert a.translation.status == "ok" and a.translation.truncated is True and a.summary_en


def test_one_failing_item_fails_alone(settings_tiny, translator, store, monkeypatch):
    real = translator.model.generate
    tok = translator.tokenizer

    def flaky(*args, **kwargs):
        texts = tok.batch_decode(kwargs["input_ids"], skip_special_tokens=True)
        if any("Сбой" in t for t in texts):
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(translator.model, "generate", flaky)
    items = [art("ok1", "Ракеты перехвачены"), art("bad", "Сбой модели"), art("ok2", "Торги прошли спокойно")]
    out, counts = translate_stage(items, settings=settings_tiny, store=store)
    status = {a.id: a.translation for a in out}
    assert status["bad"].status == "failed" and "injected failure" in status["bad"].error
    assert out[1].title_en is None
    assert status["ok1"].status == status["ok2"].status == "ok"
    assert counts["translation_failed"] == 1 and counts["translated"] == 2


def test_suspicious_output_is_flagged_also_from_cache(settings_tiny, translator, store):
    title = "Ракеты и беспилотники"
    looping = "missiles and drones and drones and drones and drones and drones"
    store.put_translations([(text_key(translator.cache_id, "ru", title), looping)])
    [a], counts = translate_stage([art("s", title)], settings=settings_tiny, store=store)
    assert a.translation.status == "ok" and a.translation.suspicious is True
    assert "repeated" in a.translation.error and a.title_en == looping
    assert counts["translation_cached"] == 1 and counts["translation_suspicious"] == 1


def test_looks_suspicious():
    assert looks_suspicious("Ракета", "the the the the") is not None
    assert looks_suspicious("Ракета упала", "was hit by was hit by was hit by") is not None
    assert looks_suspicious("Ракета упала в море", "") == "empty output"
    assert looks_suspicious("Ракета", " ".join(f"w{i}" for i in range(40))) is not None
    assert looks_suspicious("Президент провёл совещание с членами Совета безопасности",
                            "The President held a meeting with the members of the Security Council") is None
    assert looks_suspicious("Очень, очень важно", "Very, very important") is None


def test_translator_is_loaded_once_per_process(settings_tiny, tmp_path):
    a = get_translator(settings_tiny)
    assert get_translator(settings_tiny, "ru") is a
    s = settings_tiny.model_copy(update={"translation_models": {"uk": str(tmp_path / "uk-model")}})
    assert model_for(s, "uk") == str(tmp_path / "uk-model") and model_for(s, "ru") == s.translation_model


def test_uncached_hub_id_offline_is_unavailable_without_network(monkeypatch):
    from huggingface_hub import constants

    from pipeline.errors import ModelUnavailable
    from pipeline.translate.marian import MarianTranslator

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        MarianTranslator.load("mediamon-tests/no-such-model")


def test_cuda_requested_without_cuda_falls_back_to_cpu(settings_tiny, mediamon_logs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the fallback path is not reachable")
    tr = get_translator(settings_tiny.model_copy(update={"translation_device": "cuda"}))
    assert tr.device == "cpu"
    assert [r.fields["requested"] for r in mediamon_logs if r.getMessage() == "translation_device_fallback"] == ["cuda"]


def test_backend_none_skips_and_does_not_retry(tmp_path, store):
    settings = make_settings(tmp_path, translation_backend="none")
    out, counts = translate_stage([art("n1", "Ракеты перехвачены")], settings=settings, store=store)
    assert out[0].translation.status == "skipped" and out[0].translation.error == "translation disabled"
    assert counts == {"translation_skipped": 1}
    store.index(out)
    assert store.articles_pending_translation() == []


def test_unavailable_model_one_log_line_then_retried_next_run(tmp_path, settings_tiny, store, mediamon_logs):
    bad = make_settings(tmp_path, translation_backend="transformers",
                        translation_model=str(tmp_path / "no-such-model"))
    items = [art(f"u{i}", f"Ракеты перехвачены {i}", "Ночью над морем.") for i in range(3)]
    items.append(art("e", "Missiles intercepted", language="en"))
    out, counts = translate_stage(items, settings=bad, store=store)
    assert [a.translation.status for a in out] == ["unavailable"] * 3 + ["skipped"]
    assert all(a.title_en is None and "does not exist" in a.translation.error for a in out[:3])
    assert counts["translation_unavailable"] == 3
    lines = [r for r in mediamon_logs if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].getMessage() == "translation_unavailable"
    fields = lines[0].fields
    assert "MEDIAMON_TRANSLATION_MODEL" in fields["fix"] and "does not exist" in fields["reason"]

    store.index(out)
    pending = store.articles_pending_translation()
    assert sorted(a.id for a in pending) == ["u0", "u1", "u2"]
    again, counts2 = translate_stage(pending, settings=settings_tiny, store=store)
    assert all(a.translation.status == "ok" and a.title_en for a in again) and counts2["translated"] == 3
    store.index(again)
    assert store.articles_pending_translation() == []


# --- CLI -----------------------------------------------------------------------------------------

def _run_cli(args, env, input=None):
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, args, env=env, input=input)


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_cli_translate_jsonl(tmp_path, tiny_marian_dir, translator, generate_calls):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in [
        {"id": 1, "text": LONG_RU},
        {"id": "b", "title": "Курс рубля вырос", "summary": "Торги прошли спокойно."},
        {"id": "c", "text": "Hello there.", "language": "en"},
    ]) + "\n", encoding="utf-8")
    env = {"MEDIAMON_DATA_DIR": str(tmp_path / "data"), "MEDIAMON_CONFIG_DIR": str(tmp_path)}
    res = _run_cli(["translate", "--model", str(tiny_marian_dir), "--batch-size", "2", str(src)], env)
    assert res.exit_code == 0, res.output
    rows = _json_lines(res.stdout)
    assert [r["id"] for r in rows] == [1, "b", "c"]
    assert rows[0]["text_en"] and rows[0]["translation"]["status"] == "ok"
    assert rows[0]["translation"]["model"] == str(Path(tiny_marian_dir).resolve())
    assert rows[1]["title_en"] and rows[1]["summary_en"] and "text_en" not in rows[1]
    assert rows[2] == {"id": "c", "language": "en", "text_en": "Hello there.",
                       "translation": {"status": "skipped", "model": None, "truncated": False, "error": None,
                                       "suspicious": False}}
    assert generate_calls and all(len(c) <= 2 for c in generate_calls)

    generate_calls.clear()  # the same text again from stdin: served from the store's cache
    res2 = _run_cli(["translate", "--model", str(tiny_marian_dir), "-"], env,
                    input=json.dumps({"id": 1, "text": LONG_RU}, ensure_ascii=False) + "\n")
    assert res2.exit_code == 0 and generate_calls == []
    assert _json_lines(res2.stdout)[0]["text_en"] == rows[0]["text_en"]


def test_cli_translate_missing_model_and_help(tmp_path):
    env = {"MEDIAMON_DATA_DIR": str(tmp_path / "data")}
    res = _run_cli(["translate", "--model", str(tmp_path / "nope"), "-"], env, input="")
    message = " ".join(res.output.split())
    assert res.exit_code == 1 and "does not exist" in message and "pass --model" in message
    helptext = _run_cli(["translate", "--help"], env)
    assert helptext.exit_code == 0 and "Example:" in helptext.output


# --- end to end through `mediamon run` --------------------------------------------------------------

@pytest.mark.slow
def test_mediamon_run_with_unavailable_model_then_retry(tmp_path, feed_server, tiny_marian_dir):
    cfg = tmp_path / "config"
    cfg.mkdir()
    feeds = []
    for name, lang in (("ru_news.xml", "ru"), ("en_news.xml", "en")):
        url = feed_server.add(f"/{name}", (FEED_FIXTURES / name).read_bytes())
        feeds.append({"id": name.split(".")[0].replace("_", "-"), "url": url, "source": name, "language": lang})
    write_feeds_yaml(cfg, feeds)
    env = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
           "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true", "MEDIAMON_TRANSLATION_BACKEND": "transformers",
           "MEDIAMON_TRANSLATION_MODEL": str(tmp_path / "missing-model")}
    res = _run_cli(["run", "--json"], env)
    assert res.exit_code == 0, res.output
    counters = _json_lines(res.stdout)[-1]
    assert counters["translation_unavailable"] > 0 and counters["new"] > counters["translation_unavailable"]
    store = SQLiteStore(tmp_path / "data" / "mediamon.sqlite3")
    pending = {a.id for a in store.articles_pending_translation()}
    store.close()
    assert len(pending) == counters["translation_unavailable"]

    env["MEDIAMON_TRANSLATION_MODEL"] = str(tiny_marian_dir)
    res = _run_cli(["run", "--json", "--force"], env)
    assert res.exit_code == 0, res.output
    counters = _json_lines(res.stdout)[-1]
    assert counters["translation_retried"] == len(pending) and counters["translated"] == len(pending)
    store = SQLiteStore(tmp_path / "data" / "mediamon.sqlite3")
    try:
        assert store.articles_pending_translation() == []
        done = store.get_articles(sorted(pending))
        assert all(a.translation.status == "ok" and a.title_en for a in done)
    finally:
        store.close()


@pytest.fixture(autouse=True, scope="module")
def _fresh_translators():
    clear_translator_cache()
    yield
    clear_translator_cache()
