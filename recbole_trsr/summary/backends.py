"""Where summaries are generated: in this process with transformers (default) or on a server."""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import urlparse

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import Generated, GenerationSettings, generate

ROUNDING_ONLY = ("batch_size", "static_cache_tokens", "batch_follows_memory")


def model_identity(model_name: str, settings: GenerationSettings, backend: str | None = None) -> str:
    """What a summary's text depends on besides its prompt: the model, the generation settings and, for a
    server, that it was a server (which names its model as it likes, and may quantize or template it its
    own way), so that summaries of one backend are never taken for another's. Batch size and the cache only change
    rounding, not what is asked for, so they stay out."""
    generation = {key: value for key, value in asdict(settings).items() if key not in ROUNDING_ONLY}
    identity = f"{model_name}|{sorted(generation.items())}"
    return f"{backend}|{identity}" if backend else identity


class TransformersBackend:
    """Batched greedy generation in this process."""

    def __init__(self, model, tokenizer, settings: GenerationSettings, model_name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.identity = model_identity(model_name, settings)

    def generate(self, prompts: list[str], progress: bool = True) -> list[Generated]:
        return generate(self.model, self.tokenizer, prompts, self.settings, progress=progress)


def check_server_url(base_url) -> None:
    if not isinstance(base_url, str) or urlparse(base_url).scheme not in ("http", "https"):
        raise UserInputError(f"summary_server_url {base_url!r} is not an http:// or https:// address")


class OpenAICompatibleBackend:
    """Generation on a server that speaks the OpenAI chat-completions API (vLLM, llama.cpp's server, TGI).

    Requests go out concurrently, greedy (temperature 0); the server applies the model's chat template.
    Summaries made on a GPU cluster land in the same store as local ones when ``model_name`` matches.
    """

    def __init__(
        self,
        base_url: str,
        model_name: str,
        settings: GenerationSettings,
        concurrency: int = 8,
        timeout: float = 600.0,
        api_key: str | None = None,
    ):
        check_server_url(base_url)
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model_name = model_name
        self.settings = settings
        self.concurrency = concurrency
        self.timeout = timeout
        self.api_key = api_key
        self.identity = model_identity(model_name, settings, backend="server")

    def _complete(self, prompt: str) -> Generated:
        import json
        import urllib.error
        import urllib.request

        body = {
            "model": self.model_name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.settings.max_new_tokens,
            "temperature": 0.0,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:  # reachable, but it refused this request: say what it said
            detail = error.read().decode(errors="replace").strip().replace("\n", " ")[:300]
            raise UserInputError(f"summary server {self.url} answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UserInputError(f"summary server {self.url} is unreachable ({reason})") from None
        try:
            answer = json.loads(raw)
            usage = answer.get("usage") or {}
            text = (answer["choices"][0]["message"].get("content") or "").strip()
            return Generated(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            quoted = raw.decode(errors="replace").strip().replace("\n", " ")[:200]
            raise UserInputError(
                f"summary server {self.url} did not answer like an OpenAI chat-completions server: {quoted!r}"
            ) from None

    def generate(self, prompts: list[str], progress: bool = True) -> list[Generated]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete, prompts))
