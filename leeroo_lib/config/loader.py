"""One YAML loader for profiles and endpoints files: every key a schema refuses, named with the keys it knows."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ValidationError

from .base import CONFIG_DIR, DEFAULT_PROFILE, ENDPOINTS_DIR, OUTPUT_DIR_ENV, PROFILE_ENV, _Block
from .endpoints import EndpointsFile
from .profile import Profile


def _unwrap(annotation):
    """The model or container behind Optional[...] / Annotated[...]; None for plain values."""
    if typing.get_origin(annotation) is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [_unwrap(a) for a in typing.get_args(annotation)]
        inner = [a for a in inner if a is not None]
        return inner[0] if len(inner) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, list):
        return annotation
    return None


def _locate(root: type[BaseModel], loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """A pydantic error location as a key path (``scoring.live_experts[0].name``, union branch tags
    dropped), and the block the key is in."""
    node, block, path = root, None, ""
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            block = node
            field_info = node.model_fields.get(part)
            node = _unwrap(field_info.annotation) if field_info else None
            path += f".{part}" if path else str(part)
        elif typing.get_origin(node) in (dict, list):
            node = _unwrap(typing.get_args(node)[-1])
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        # else: the name of the union branch that failed, not a key
    return path, block


def _describe(key: str, block: type[BaseModel] | None, errors: list[dict]) -> str:
    known = f"; known keys here: {', '.join(block.model_fields)}" if block is not None else ""
    kinds = {e["type"] for e in errors}
    where = key or "the file"
    if "extra_forbidden" in kinds:
        return f"{where}: unknown key{known}"
    if "missing" in kinds:
        return f"{where}: missing{known}"
    if kinds == {"value_error"}:  # a cross-field rule of a validator: its message says it all
        return f"{where}: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in errors)
    return f"{where}: {' or '.join(e['msg'] for e in errors)}, got {errors[0]['input']!r}"


def read_settings(path: Path, schema: type[_Block]):
    """Read a YAML settings file into ``schema`` (a profile, an endpoints file); one ValueError lists
    every key the schema refuses, with the keys it knows."""
    path = Path(path)
    try:
        settings = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a mapping of settings (key: value), found {type(settings).__name__}")
    try:
        return schema.model_validate(settings)
    except ValidationError as err:
        by_key: dict[str, tuple[type[BaseModel] | None, list[dict]]] = {}
        for error in err.errors():
            key, block = _locate(schema, error["loc"])
            by_key.setdefault(key, (block, []))[1].append(error)
        problems = [_describe(key, block, errors) for key, (block, errors) in by_key.items()]
        raise ValueError(
            f"{path} does not fit the schema of {schema.__name__} (leeroo_lib/config/):\n  " + "\n  ".join(problems)
        ) from None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name: str | None = None) -> Profile:
    """Read and validate configs/<name>.yaml.

    ``name=None`` takes $LEEROO_PROFILE, else ``cpu``: a notebook's ``profile = None`` parameter
    thus runs small under nbval (LEEROO_PROFILE=smoke) and full under ``make reproduce``.
    $LEEROO_OUTPUT_DIR, where set, replaces the profile's ``output_dir``: the tests run the notebooks into a
    fresh folder that way, with nothing cached.
    A profile that needs a CUDA GPU fails here, before any work, where there is none.
    """
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown profile '{name}': choose one of {', '.join(available_profiles())} "
            f"(files in {CONFIG_DIR}), e.g. `make reproduce PROFILE=cpu`"
        )
    profile = read_settings(path, Profile)
    if profile.name != name:
        raise ValueError(f"{path}: name '{profile.name}' differs from the file's name; set name: {name}")
    if os.environ.get(OUTPUT_DIR_ENV):
        profile.output_dir = os.environ[OUTPUT_DIR_ENV]
    if profile.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                f"profile '{name}' needs a CUDA GPU and none is visible to torch "
                f"(torch {torch.__version__}); run with PROFILE=cpu, or install a CUDA build of torch "
                "with `make venv TORCH_SPEC=torch==<version> TORCH_INDEX=<cuda wheel index>`"
            )
    return profile


def load_endpoints(profile: str) -> EndpointsFile:
    """configs/endpoints/<profile>.yaml: the expert endpoints the routing service of ``profile`` uses."""
    path = ENDPOINTS_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no endpoints file {path}: write one like configs/endpoints/cpu.yaml (one entry per "
            "expert of the pool: base_url, model, api_key_env, api; or local)"
        )
    return read_settings(path, EndpointsFile)
