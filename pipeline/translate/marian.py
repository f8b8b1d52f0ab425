"""transformers backend: MarianMT (opus-mt) models through the tokenizer and ``generate``.

transformers 5 removed the ``translation`` pipeline, so this is the explicit
tokenize → ``generate`` → decode loop.  torch and transformers are imported inside
:meth:`MarianTranslator.load` so that importing :mod:`pipeline.translate` (the Airflow
DAG does) stays light.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelUnavailable, TranslationFailed
from ..logs import get_logger, log
from .base import DEFAULT_CHUNK_TOKENS, DecodingSettings

logger = get_logger("translate")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _local_fingerprint(path: Path) -> str:
    """Cheap identity of a local model directory: config + weight file sizes and mtimes.
    Replacing the weights changes it (cache entries of the old model are not reused)."""
    h = hashlib.sha1()
    cfg = path / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    for name in WEIGHT_FILES:
        f = path / name
        if f.exists():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _hub_revision(model_name: str, model: Any) -> str | None:
    rev = getattr(model.config, "_commit_hash", None)
    if rev:
        return str(rev)
    try:  # the snapshot directory of the hub cache is named after the commit
        from transformers.utils import cached_file

        resolved = cached_file(model_name, "config.json", local_files_only=True)
        if resolved:
            parts = Path(resolved).parts
            if "snapshots" in parts:
                return parts[parts.index("snapshots") + 1]
    except Exception:  # noqa: BLE001 - revision is best effort provenance
        pass
    return None


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (offline mode, DNS, connect), or None."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants
    except ImportError as exc:
        return f"huggingface_hub missing: {exc}"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(getattr(constants, "ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError as exc:
        return f"{url.hostname}: {exc}"
    return None


class MarianTranslator(DecodingSettings):
    """A loaded Marian model.  Thread-safe: one ``generate`` at a time."""

    backend = "transformers"

    def __init__(self, tokenizer: Any, model: Any, *, model_id: str, cache_id: str, device: str,
                 max_input_tokens: int, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, num_beams: int | None = None,
                 no_repeat_ngram_size: int = 4, length_ratio: float = 2.0, length_slack: int = 10,
                 generate_overrides: dict[str, Any] | None = None):
        self.tokenizer = tokenizer
        self.model = model
        self.generate_overrides = dict(generate_overrides or {})
        self.max_output_tokens = max_input_tokens + 1
        gen = getattr(model, "generation_config", None)
        if gen is not None and getattr(gen, "max_length", None):
            self.max_output_tokens = int(gen.max_length)
            # we always pass max_new_tokens; a max_length in the config only triggers a warning per call
            gen.max_length = None
        beams = num_beams if num_beams is not None else getattr(gen, "num_beams", 1) or 1
        self._init_decoding(model_id=model_id, cache_id=cache_id, device=device, max_input_tokens=max_input_tokens,
                            chunk_tokens=chunk_tokens, num_beams=num_beams, beams_in_effect=beams,
                            no_repeat_ngram_size=no_repeat_ngram_size, length_ratio=length_ratio,
                            length_slack=length_slack)
        self._lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str, *, device: str = "cpu", num_beams: int | None = None, **kwargs: Any) -> "MarianTranslator":
        """Load a hub id or a local directory.  Raises ModelUnavailable with the reason."""
        try:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        except ImportError as exc:  # a slim install without the translation extras
            raise ModelUnavailable(f"transformers backend needs torch, transformers and sentencepiece: {exc}") from exc

        path = Path(model).expanduser()
        local = path.is_dir()
        if not local and (model.startswith(("/", ".", "~")) or model.count("/") > 1):
            raise ModelUnavailable(f"translation model directory {model!r} does not exist")
        src = str(path.resolve()) if local else model

        def from_pretrained(**kw: Any) -> tuple[Any, Any]:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*sacremoses.*")
                return AutoTokenizer.from_pretrained(src, **kw), AutoModelForSeq2SeqLM.from_pretrained(src, **kw)

        try:
            if local:
                tokenizer, mdl = from_pretrained()
            else:
                # A hub id: the snapshot in the local Hugging Face cache first (fast, pinned, works
                # offline); the network only when it is not there, and only if the hub answers
                # at all (otherwise huggingface_hub retries for a minute before giving up).
                try:
                    tokenizer, mdl = from_pretrained(local_files_only=True)
                except Exception:  # noqa: BLE001 - not cached (or incomplete): try the hub
                    unreachable = _hub_unreachable()
                    if unreachable:
                        raise ModelUnavailable(f"translation model {model!r} is not in the local Hugging Face "
                                               f"cache and the hub is unreachable ({unreachable})") from None
                    tokenizer, mdl = from_pretrained()
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError, hub errors: all mean "cannot load"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelUnavailable(f"cannot load translation model {model!r}: "
                                   f"{exc.__class__.__name__}: {first[:300]}") from exc

        dev = "cpu"
        if device.startswith("cuda"):
            if torch.cuda.is_available():
                dev = device
            else:
                log(logger, 30, "translation_device_fallback", requested=device, using="cpu",
                    reason="CUDA is not available")
        mdl.eval()
        mdl.to(dev)

        if local:
            model_id = src
            cache_id = f"{src}#{_local_fingerprint(path)}"
        else:
            rev = _hub_revision(model, mdl)
            model_id = f"{model}@{rev}" if rev else model
            cache_id = model_id
        limits = [n for n in (getattr(mdl.config, "max_position_embeddings", None),
                              getattr(tokenizer, "model_max_length", None)) if n and n < 10**9]
        max_input = (min(limits) if limits else 512) - 1  # room for </s>
        log(logger, 20, "translation_model_loaded", model=model_id, device=dev, max_input_tokens=max_input)
        return cls(tokenizer, mdl, model_id=model_id, cache_id=cache_id, device=dev, max_input_tokens=max_input,
                   num_beams=num_beams, **kwargs)

    # -- Translator protocol ------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def translate_batch(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        import torch

        with self._lock, torch.inference_mode():
            enc = self.tokenizer(list(texts), return_tensors="pt", padding=True)
            lengths = enc["attention_mask"].sum(dim=1)
            longest = int(lengths.max())
            if longest > self.max_input_tokens + 1:
                # the stage packs chunks to fit; never let the tokenizer cut silently
                raise TranslationFailed(f"input of {longest} tokens exceeds the model limit "
                                        f"{self.max_input_tokens + 1}")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            # Marian can loop on unusual input: bound each output by its own input length
            limits = [self._max_new(int(n)) for n in lengths]
            kwargs: dict[str, Any] = {
                "max_new_tokens": max(limits),
                "no_repeat_ngram_size": self.no_repeat_ngram_size,
            }
            if self.num_beams is not None:
                kwargs["num_beams"] = self.num_beams
            kwargs.update(self.generate_overrides)
            try:
                out = self.model.generate(**enc, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported per item by the stage
                raise TranslationFailed(f"generate failed: {exc.__class__.__name__}: {exc}") from exc
            self.stats["batches"] += 1
            self.stats["inputs"] += len(texts)
            if "max_new_tokens" not in self.generate_overrides:
                # the batch ran to the longest row's budget; cut every row to its own, so the
                # result (and what the cache stores) does not depend on the batch it was in
                # (a forced end-of-sequence takes the last slot of the budget, as it would alone)
                keep = 0 if getattr(self.model.generation_config, "forced_eos_token_id", None) is not None else 1
                out = [row[: lim + keep] for row, lim in zip(out, limits)]
            return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _max_new(self, source_tokens: int) -> int:
        return min(self.max_output_tokens, int(source_tokens * self.length_ratio) + self.length_slack)
