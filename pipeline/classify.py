"""Topic classification: readable rules (topics.yaml queries) plus an optional NLI model.

How the two combine
-------------------
* **Rules** (always): a topic applies when its query matches the item (original or English text,
  see pipeline/query/).  ``TopicMatch(method="rule", score=1.0, terms=<matched words as written>)``.
* **Model** (only when ``MEDIAMON_CLASSIFIER_MODEL`` is set): a zero-shot NLI model scores the
  topics the rules did *not* assign: premise = the item (English text when there is a translation),
  hypothesis = "This news item is about <first sentence of the topic description>."  The topic
  applies when P(entailment) (softmax over entailment vs contradiction, as in the transformers
  zero-shot pipeline with multi_label) is at least ``MEDIAMON_CLASSIFIER_THRESHOLD``:
  ``TopicMatch(method="model", score=p, terms=())``.  So: *rule OR model ≥ threshold*; rules stay
  the explainable backbone and the model can only add recall.  A model failure leaves the rule
  results in place and is counted (``classify_model_errors``).

A topic with ``languages:`` only applies to items in those languages (detected language, else
the feed's declared one; items of unknown language are classified against every topic).
``topic:x`` inside a topic query sees the topics listed *before* it in topics.yaml (as the rules
matched them, before ``yields_to`` below).

Main point (``yields_to``)
--------------------------
A topic may name topics it *yields to* (``yields_to: [missile_strike]``).  When it and one of them
both match an item, the item may be about one of them and mention the other in passing (the
codebook: a topic applies when it is the title or the main point of the item).  Then the title
decides: if the other topic's rule matches the title alone (title and its translation, without the
summary) and this topic's rule does not, this topic is dropped (:func:`yielded_to`).  When both or
neither match the title alone, both stay.  ``mediamon show`` and ``topics explain`` say when a
topic was dropped this way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, overload, runtime_checkable

from .config import TopicConfig
from .errors import ConfigError, ModelUnavailable
from .logs import get_logger, log
from .models import Article, TopicMatch
from .query import AnalyzedArticle, Query, QuerySyntaxError, parse_query
from .query.evaluate import _eval, _reference_matched_terms
from .query.percolate import QueryIndex

logger = get_logger(__name__)

HYPOTHESIS_TEMPLATE = "This news item is about {}."


@dataclass(frozen=True)
class CompiledTopic:
    config: TopicConfig
    query: Query

    @property
    def id(self) -> str:
        return self.config.id

    def applies_to(self, article: Article) -> bool:
        langs = self.config.languages
        if not langs:
            return True
        lang = article.language or article.feed_language
        return lang is None or lang in langs


class CompiledTopics(Sequence[CompiledTopic]):
    """The compiled topics in topics.yaml order (a sequence of :class:`CompiledTopic`), with what
    :func:`rule_matches` needs built once: each query's compiled matcher, an inverted index over
    their prefilters (:class:`~pipeline.query.percolate.QueryIndex`: an article is tested only
    against the topics it could match) and whether any topic restricts languages."""

    __slots__ = ("_topics", "matchers", "query_index", "restricts_languages")

    def __init__(self, topics: Sequence[CompiledTopic]):
        self._topics = tuple(topics)
        self.matchers = tuple(t.query.compile() for t in self._topics)
        self.query_index = QueryIndex([t.query for t in self._topics])
        self.restricts_languages = any(t.config.languages for t in self._topics)

    @overload
    def __getitem__(self, i: int) -> CompiledTopic: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[CompiledTopic]: ...

    def __getitem__(self, i: int | slice) -> CompiledTopic | Sequence[CompiledTopic]:
        return self._topics[i]

    def __len__(self) -> int:
        return len(self._topics)

    def __iter__(self) -> Iterator[CompiledTopic]:
        return iter(self._topics)


def compile_topics(topics: Sequence[TopicConfig]) -> CompiledTopics:
    out = []
    for t in topics:
        try:
            q = parse_query(t.query, t.aliases)
        except QuerySyntaxError as exc:
            raise ConfigError(f"topic {t.id!r}: field 'query': {exc}") from exc
        q.compile()
        out.append(CompiledTopic(t, q))
    return CompiledTopics(out)


def rule_matches(article: Article | AnalyzedArticle, compiled: Sequence[CompiledTopic]) -> list[TopicMatch]:
    """Rule-based topic matches of one article, in topics.yaml order (after ``yields_to``).

    With :class:`CompiledTopics` (what :func:`compile_topics` returns) only the topics that the
    index names as candidates are tested; the others cannot match (their prefilter would say no),
    so the result, and ``doc.topics`` as each ``topic:`` query sees it, are those of testing every
    topic (:func:`_reference_rule_matches`, the equivalence tests' definition).  Another sequence
    of :class:`CompiledTopic` is indexed for this one call (pass compile_topics' result to reuse it)."""
    if not isinstance(compiled, CompiledTopics):
        compiled = CompiledTopics(compiled)
    doc = article if isinstance(article, AnalyzedArticle) else AnalyzedArticle(article)
    doc.topics = frozenset()
    matches: list[TopicMatch] = []
    topics, matchers = compiled._topics, compiled.matchers
    check_language = compiled.restricts_languages
    for i in compiled.query_index.candidates(doc):
        t = topics[i]
        if check_language and not t.applies_to(doc.article):
            continue
        if matchers[i](doc):
            matches.append(TopicMatch(t.id, 1.0, "rule", tuple(t.query.matched_terms(doc))))
            doc.topics = doc.topics | {t.id}
    return _main_point(doc, matches, compiled)


def _reference_rule_matches(article: Article | AnalyzedArticle,
                            compiled: Sequence[CompiledTopic]) -> list[TopicMatch]:
    """Every topic tested in turn by the plain tree walk, matched words too (the definition
    :func:`rule_matches` must agree with: no index, no compiled closures, no cache of matched words;
    ``yields_to`` by the same :func:`_main_point`)."""
    doc = article if isinstance(article, AnalyzedArticle) else AnalyzedArticle(article)
    doc.topics = frozenset()
    matches: list[TopicMatch] = []
    for t in compiled:
        if not t.applies_to(doc.article):
            continue
        if _eval(t.query.root, doc):
            matches.append(TopicMatch(t.id, 1.0, "rule", tuple(_reference_matched_terms(t.query.root, doc))))
            doc.topics = doc.topics | {t.id}
    return _main_point(doc, matches, compiled)


def title_view(article: Article) -> Article:
    """The article with its title (and the title's translation) only: what ``yields_to`` asks."""
    return article.replace(summary="", content=None, summary_en=None, content_en=None)


def yielded_to(topic: CompiledTopic, matched: Sequence[str], compiled: Sequence[CompiledTopic],
               title: AnalyzedArticle) -> str | None:
    """The topic that ``topic`` (taken to have matched the whole item) yields to, or None: the
    first of its ``yields_to`` among the ``matched`` topic ids whose rule matches the title alone
    (``title``: the analysed :func:`title_view` of the item) while ``topic``'s rule does not."""
    wanted = [y for y in topic.config.yields_to if y in matched]
    if not wanted:
        return None
    title.topics = frozenset(matched)
    if topic.query.compile()(title):
        return None
    by_id = {t.id: t for t in compiled}
    return next((y for y in wanted if y in by_id and by_id[y].query.compile()(title)), None)


def gives_way(article: Article, topic: CompiledTopic, compiled: Sequence[CompiledTopic],
              matched: Sequence[str] | None = None) -> str | None:
    """:func:`yielded_to` for one topic that matched ``article`` as a whole, for the explanations
    (``mediamon show``, the search page, ``topics explain``); ``matched``: the topic ids that match
    the whole item (when None, those of ``topic.config.yields_to`` are tested here)."""
    if not topic.config.yields_to:
        return None
    if matched is None:
        doc = AnalyzedArticle(article)
        matched = [topic.id] + [c.id for c in compiled if c.id in topic.config.yields_to
                                and c.applies_to(article) and c.query.compile()(doc)]
    return yielded_to(topic, matched, compiled, AnalyzedArticle(title_view(article)))


def _main_point(doc: AnalyzedArticle, matches: list[TopicMatch],
                compiled: Sequence[CompiledTopic]) -> list[TopicMatch]:
    """Drop the matched topics that yield to another matched topic (see the module docstring).
    Decided on the matches as the rules made them, so the order of topics.yaml does not matter."""
    if len(matches) < 2:
        return matches
    matched = [m.topic for m in matches]
    contested = [t for t in compiled if t.id in matched and any(y in matched for y in t.config.yields_to)]
    if not contested:
        return matches
    title = AnalyzedArticle(title_view(doc.article))
    dropped = {t.id for t in contested if yielded_to(t, matched, compiled, title) is not None}
    return [m for m in matches if m.topic not in dropped] if dropped else matches


# --- optional model ---------------------------------------------------------------------------------

@runtime_checkable
class TopicClassifier(Protocol):
    """Scores (article, topic) pairs in [0, 1]."""

    name: str
    threshold: float

    def score(self, articles: Sequence[Article], topics: Sequence[TopicConfig]) -> list[list[float]]:
        """One row per article, one score per topic."""
        ...


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text).rstrip(".!?")


def hypothesis(topic: TopicConfig) -> str:
    return HYPOTHESIS_TEMPLATE.format(_first_sentence(topic.description) if topic.description else topic.name)


def premise(article: Article) -> str:
    title = article.title_en or article.title
    summary = article.summary_en or article.summary
    return f"{title}. {summary}".strip(" .") if summary else title


class NLIClassifier:
    """Zero-shot topic scoring with a sequence-classification NLI model (tokenizer + model directly)."""

    def __init__(self, model_path: str, *, threshold: float = 0.8, device: str = "cpu", batch_size: int = 16,
                 max_length: int = 512):
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForSequenceClassification.from_pretrained(model_path)
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError, HF errors: all mean "cannot load"
            raise ModelUnavailable(f"cannot load classifier model {model_path!r}: {exc}") from exc
        self._torch = torch
        self.model.to(device)
        self.model.eval()
        self.device = device
        self.name = model_path
        self.threshold = threshold
        self.batch_size = batch_size
        self.max_length = max_length
        labels = {str(v).lower(): int(k) for k, v in (self.model.config.id2label or {}).items()}
        ent = next((i for name, i in labels.items() if name.startswith("entail")), None)
        con = next((i for name, i in labels.items() if name.startswith("contra")), None)
        if ent is None:
            raise ModelUnavailable(f"{model_path}: not an NLI model (no 'entailment' label in id2label: "
                                   f"{self.model.config.id2label})")
        self.entailment_id = ent
        self.contradiction_id = con

    def _entailment(self, premises: list[str], hypotheses: list[str]) -> list[float]:
        torch = self._torch
        out: list[float] = []
        for i in range(0, len(premises), self.batch_size):
            enc = self.tokenizer(premises[i:i + self.batch_size], hypotheses[i:i + self.batch_size],
                                 truncation="only_first", max_length=self.max_length, padding=True,
                                 return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits
            if self.contradiction_id is not None:
                pair = logits[:, [self.contradiction_id, self.entailment_id]]
                probs = pair.softmax(dim=-1)[:, 1]
            else:
                probs = logits.softmax(dim=-1)[:, self.entailment_id]
            out.extend(float(p) for p in probs)
        return out

    def score(self, articles: Sequence[Article], topics: Sequence[TopicConfig]) -> list[list[float]]:
        hyps = [hypothesis(t) for t in topics]
        premises = [premise(a) for a in articles for _ in topics]
        flat = self._entailment(premises, hyps * len(articles))
        n = len(topics)
        return [flat[i * n:(i + 1) * n] for i in range(len(articles))]


def load_classifier(settings) -> TopicClassifier | None:
    """The NLI classifier named by ``settings.classifier_model``, or None (rules only).
    Raises ModelUnavailable when it is set but cannot be loaded."""
    path = getattr(settings, "classifier_model", None)
    if not path:
        return None
    return NLIClassifier(str(path), threshold=float(getattr(settings, "classifier_threshold", 0.8)),
                         device=getattr(settings, "classifier_device", "cpu"))


# --- the stage --------------------------------------------------------------------------------------

def classify_stage(articles: Sequence[Article], topics: list[TopicConfig],
                   classifier: TopicClassifier | None = None) -> tuple[list[Article], dict[str, int]]:
    """Set ``topics`` and ``topic_matches`` on every article (rules, then the optional model).

    Counts: classified, classified_with_topics, topic_matches, classify_model_matches,
    classify_errors (an item that could not be classified keeps its old topics),
    classify_model_errors."""
    compiled = compile_topics(topics)
    counts = {"classified": 0, "classified_with_topics": 0, "topic_matches": 0, "classify_model_matches": 0,
              "classify_errors": 0, "classify_model_errors": 0}
    results: list[list[TopicMatch] | None] = []
    for a in articles:
        try:
            results.append(rule_matches(a, compiled))
        except Exception as exc:  # noqa: BLE001 - one bad item never fails the batch
            log(logger, logging.WARNING, "classify_failed", feed_id=a.feed_id, article_id=a.id, error=repr(exc))
            counts["classify_errors"] += 1
            results.append(None)

    if classifier is not None and compiled and articles:
        _apply_model(articles, compiled, results, classifier, counts)

    out: list[Article] = []
    for a, matches in zip(articles, results):
        if matches is None:
            out.append(a)
            continue
        counts["classified"] += 1
        counts["topic_matches"] += len(matches)
        if matches:
            counts["classified_with_topics"] += 1
        out.append(a.replace(topics=tuple(m.topic for m in matches), topic_matches=tuple(matches)))
    return out, counts


def _apply_model(articles: Sequence[Article], compiled: Sequence[CompiledTopic],
                 results: list[list[TopicMatch] | None], classifier: TopicClassifier,
                 counts: dict[str, int]) -> None:
    order = {t.id: i for i, t in enumerate(compiled)}
    idx = [i for i, r in enumerate(results) if r is not None]
    if not idx:
        return
    try:
        scores = classifier.score([articles[i] for i in idx], [t.config for t in compiled])
    except Exception as exc:  # noqa: BLE001 - the rules' results stand
        log(logger, logging.WARNING, "classifier_failed", model=getattr(classifier, "name", "?"), error=repr(exc))
        counts["classify_model_errors"] += 1
        return
    for i, row in zip(idx, scores):
        matches = results[i]
        assert matches is not None
        have = {m.topic for m in matches}
        for t, p in zip(compiled, row):
            if t.id in have or not t.applies_to(articles[i]) or p < classifier.threshold:
                continue
            matches.append(TopicMatch(t.id, round(float(p), 4), "model", ()))
            counts["classify_model_matches"] += 1
        matches.sort(key=lambda m: order[m.topic])
