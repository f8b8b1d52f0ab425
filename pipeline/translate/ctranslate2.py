"""CTranslate2 backend: Marian (opus-mt) models converted to CTranslate2, int8 on CPU by default.

Run time needs only ``ctranslate2`` and ``sentencepiece`` (no torch, no transformers):
texts are tokenized with the model's own SentencePiece files (``source.spm`` /
``target.spm``, as ``MarianTokenizer`` does), translated with
``ctranslate2.Translator.translate_batch`` and decoded with ``target.spm``.

The model directory is made once with ``mediamon models convert SRC OUT``
(:func:`convert_model`; that step needs torch + transformers), which runs
``ctranslate2.converters.TransformersConverter`` and copies the tokenizer files plus a
small ``mediamon.json`` (source model, input limit, decoding defaults) next to it.

Same contract as the transformers backend (:class:`pipeline.translate.base.Translator`):
the stage does chunking, cache, batching and provenance; ``model_id`` is
``ctranslate2:<compute type>:<directory>`` so ``translation.model`` names the backend and
quantization.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelUnavailable, TranslationFailed
from ..logs import get_logger, log
from .base import DEFAULT_CHUNK_TOKENS, DecodingSettings

logger = get_logger("translate")

META_FILE = "mediamon.json"
# files a converted directory must hold for run time (model.bin + vocabulary from the converter)
TOKENIZER_FILES = ("source.spm", "target.spm")
# copied from the transformers model when present (vocab.json: the id mapping Marian uses)
COPY_FILES = ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "generation_config.json")
SPECIAL_TOKENS = frozenset({"</s>", "<unk>", "<pad>", "<s>"})
DEFAULT_MAX_INPUT = 511  # opus-mt: 512 positions, one for </s>


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fingerprint(path: Path) -> str:
    """Identity of a converted directory: config/meta contents + model.bin size and mtime."""
    h = hashlib.sha1()
    for name in ("config.json", META_FILE):
        f = path / name
        if f.exists():
            h.update(f.read_bytes())
    for name in ("model.bin", *TOKENIZER_FILES):
        f = path / name
        if f.exists():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _convert_hint(model: str) -> str:
    return (f"convert it once with `mediamon models convert {model} DIR` (needs torch and transformers) "
            f"and set MEDIAMON_TRANSLATION_MODEL=DIR")


class CT2Translator(DecodingSettings):
    """A loaded CTranslate2 Marian model.  Thread-safe (one translate_batch at a time)."""

    backend = "ctranslate2"

    def __init__(self, translator: Any, source_sp: Any, target_sp: Any, *, model_id: str, cache_id: str,
                 device: str, compute_type: str, max_input_tokens: int, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                 num_beams: int = 1, no_repeat_ngram_size: int = 4, length_ratio: float = 2.0,
                 length_slack: int = 10, max_output_tokens: int | None = None, forced_eos: bool = True,
                 decode_overrides: dict[str, Any] | None = None):
        self.translator = translator
        self.source_sp = source_sp
        self.target_sp = target_sp
        self.compute_type = compute_type
        self.max_output_tokens = max_output_tokens or max_input_tokens + 1
        self.decode_overrides = dict(decode_overrides or {})
        # transformers spends the last slot of a length budget on a forced </s> (opus-mt's
        # forced_eos_token_id): give the same number of real tokens
        self.forced_eos = forced_eos
        self._init_decoding(model_id=model_id, cache_id=cache_id, device=device, max_input_tokens=max_input_tokens,
                            chunk_tokens=chunk_tokens, num_beams=num_beams, beams_in_effect=num_beams,
                            no_repeat_ngram_size=no_repeat_ngram_size, length_ratio=length_ratio,
                            length_slack=length_slack)
        self._lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str, *, device: str = "cpu", num_beams: int | None = None, compute_type: str = "int8",
             threads: int = 0, **kwargs: Any) -> "CT2Translator":
        """Load a converted directory.  Raises ModelUnavailable with the reason and the fix."""
        try:
            import ctranslate2
            import sentencepiece as spm
        except ImportError as exc:
            raise ModelUnavailable(f"ctranslate2 backend needs the ctranslate2 and sentencepiece packages: {exc}"
                                   ) from exc
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(f"CTranslate2 model directory {model!r} does not exist; {_convert_hint(model)}")
        path = path.resolve()
        if not (path / "model.bin").exists():
            what = "a transformers model" if (path / "config.json").exists() else "not a CTranslate2 model"
            raise ModelUnavailable(f"{str(path)!r} is {what} (no model.bin); {_convert_hint(str(path))}")
        missing = [f for f in TOKENIZER_FILES if not (path / f).exists()]
        if missing:
            raise ModelUnavailable(f"CTranslate2 model {str(path)!r} lacks {', '.join(missing)}; "
                                   f"convert with `mediamon models convert`, which copies them")
        meta: dict[str, Any] = {}
        if (path / META_FILE).exists():
            try:
                meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ModelUnavailable(f"{path / META_FILE}: invalid JSON: {exc}") from exc

        dev = "cpu"
        if device.startswith("cuda"):
            if ctranslate2.get_cuda_device_count() > 0:
                dev = "cuda"
            else:
                log(logger, 30, "translation_device_fallback", requested=device, using="cpu",
                    reason="CTranslate2 sees no CUDA device")
        index = int(device.split(":", 1)[1]) if dev == "cuda" and ":" in device else 0
        try:
            tr = ctranslate2.Translator(str(path), device=dev, device_index=index, compute_type=compute_type,
                                        inter_threads=1, intra_threads=threads or _cpu_count())
            source_sp = spm.SentencePieceProcessor(model_file=str(path / "source.spm"))
            target_sp = spm.SentencePieceProcessor(model_file=str(path / "target.spm"))
        except Exception as exc:  # noqa: BLE001 - RuntimeError/ValueError from the libraries: cannot load
            raise ModelUnavailable(f"cannot load CTranslate2 model {str(path)!r} (compute_type={compute_type}): "
                                   f"{exc.__class__.__name__}: {str(exc)[:300]}") from exc
        beams = num_beams if num_beams is not None else int(meta.get("num_beams") or 1)
        max_input = int(meta.get("max_input_tokens") or DEFAULT_MAX_INPUT)
        model_id = f"ctranslate2:{compute_type}:{path}"
        cache_id = f"{model_id}#{_fingerprint(path)}"
        log(logger, 20, "translation_model_loaded", model=model_id, device=dev, max_input_tokens=max_input,
            effective_compute_type=getattr(tr, "compute_type", compute_type))
        return cls(tr, source_sp, target_sp, model_id=model_id, cache_id=cache_id, device=dev,
                   compute_type=compute_type, max_input_tokens=max_input, num_beams=beams,
                   max_output_tokens=meta.get("max_output_tokens"), forced_eos=bool(meta.get("forced_eos", True)),
                   **kwargs)

    # -- tokenization (what MarianTokenizer does, without transformers) ----------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """SentencePiece pieces of each text, without the end-of-sequence token."""
        return self.source_sp.encode(list(texts), out_type=str)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.target_sp.decode_pieces([t for t in tokens if t not in SPECIAL_TOKENS]).strip()

    # -- Translator protocol ------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(p) for p in self.tokenize(texts)]

    def translate_tokens(self, sources: Sequence[Sequence[str]]) -> list[list[str]]:
        """Translate pre-tokenized inputs (pieces, without ``</s>``); target pieces per input."""
        if not sources:
            return []
        longest = max(len(s) for s in sources)
        if longest > self.max_input_tokens:
            raise TranslationFailed(f"input of {longest + 1} tokens exceeds the model limit "
                                    f"{self.max_input_tokens + 1}")
        limits = [max(1, self._max_new(len(s) + 1) - int(self.forced_eos)) for s in sources]
        kwargs: dict[str, Any] = {
            "beam_size": self.num_beams,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "max_decoding_length": max(limits),
            "max_input_length": 0,  # never truncate: the stage packs chunks to fit
        }
        kwargs.update(self.decode_overrides)
        with self._lock:
            try:
                results = self.translator.translate_batch([list(s) + ["</s>"] for s in sources], **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported per item by the stage
                raise TranslationFailed(f"translate_batch failed: {exc.__class__.__name__}: {exc}") from exc
            self.stats["batches"] += 1
            self.stats["inputs"] += len(sources)
        hyps = [r.hypotheses[0] for r in results]
        if "max_decoding_length" not in self.decode_overrides:
            # cut every row to its own budget, so the output (and the cache) does not depend on
            # the batch an input happened to be in
            hyps = [h[:lim] for h, lim in zip(hyps, limits)]
        return hyps

    def translate_batch(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return [self.detokenize(h) for h in self.translate_tokens(self.tokenize(texts))]

    def _max_new(self, source_tokens: int) -> int:
        return min(self.max_output_tokens, int(source_tokens * self.length_ratio) + self.length_slack)


# -- conversion (needs torch + transformers; `mediamon models convert`) ------------------------

def convert_model(src: str, out: Path, *, quantization: str = "int8", force: bool = False) -> dict[str, Any]:
    """Convert a transformers Marian model (local directory or hub id) into a CTranslate2 directory
    with the tokenizer files copied, so run time needs neither torch nor transformers.
    Returns the metadata written to ``out/mediamon.json``.  Raises ModelUnavailable."""
    try:
        from ctranslate2.converters import TransformersConverter
        from transformers import AutoConfig
    except ImportError as exc:
        raise ModelUnavailable(f"conversion needs ctranslate2, torch and transformers: {exc}") from exc
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not force:
        raise ModelUnavailable(f"output directory {str(out)!r} is not empty (use --force to overwrite)")
    local = Path(src).expanduser()
    source = str(local.resolve()) if local.is_dir() else src
    try:
        config = AutoConfig.from_pretrained(source)
        present = [f for f in COPY_FILES if _has_file(source, f)]
        missing = [f for f in TOKENIZER_FILES if f not in present]
        if missing:
            raise ModelUnavailable(f"{src!r} has no {', '.join(missing)}: only Marian (opus-mt) models with "
                                   f"SentencePiece files are supported")
        converter = TransformersConverter(source, copy_files=present)
        tmp = out.with_name(out.name + ".converting")
        if tmp.exists():
            shutil.rmtree(tmp)
        converter.convert(str(tmp), quantization=quantization, force=True)
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - hub errors, unsupported architectures
        raise ModelUnavailable(f"cannot convert {src!r}: {exc.__class__.__name__}: {str(exc)[:300]}") from exc
    positions = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_INPUT + 1
    gen: dict[str, Any] = {}
    if (tmp / "generation_config.json").exists():
        gen = json.loads((tmp / "generation_config.json").read_text(encoding="utf-8"))
    import ctranslate2

    meta = {
        "source": source,
        "source_revision": getattr(config, "_commit_hash", None),
        "model_type": getattr(config, "model_type", None),
        "quantization": quantization,
        "max_input_tokens": int(positions) - 1,
        "max_output_tokens": int(gen.get("max_length") or positions),
        "num_beams": int(gen.get("num_beams") or 1),
        "forced_eos": (gen.get("forced_eos_token_id", getattr(config, "forced_eos_token_id", None))) is not None,
        "ctranslate2_version": ctranslate2.__version__,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return meta


def _has_file(source: str, name: str) -> bool:
    if Path(source).is_dir():
        return (Path(source) / name).exists()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(source, name)
        return True
    except Exception:  # noqa: BLE001 - absent on the hub (or unreachable: the converter will say)
        return False
