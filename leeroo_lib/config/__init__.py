"""Profiles (smoke, cpu, paper), the routing service's endpoints files, and the project's folders.

A profile is a YAML file in configs/. It says how large a run is and where its outputs go, so that the small CI
run never writes over the results of a full one. ``profile.Profile`` is the one description of its keys, and
the object every reader gets: ``load_profile`` validates the file and returns it, so a typo, a missing key, a
wrong type or a cross-field mistake (a pool that is not defined, a cost_aware universe without its price cap) fails at
once, naming the file, the key and the keys it knows. The expert endpoints of the routing service
(configs/endpoints/<profile>.yaml, ``endpoints.EndpointsFile``) are read by the same loader (``loader``), with the
same error format. ``base`` holds what they share: the folders, the files passed between notebooks, the types.

``leeroo check-profile <profile>`` checks one profile and prints its error, if any (the Makefile runs it before
the notebooks).
"""

from .base import (
    ARTIFACTS,
    CONFIG_DIR,
    DATA_DIR,
    DEFAULT_PROFILE,
    ENDPOINTS_DIR,
    OUTPUT_DIR_ENV,
    PROFILE_ENV,
    ROOT,
    TRAINING_SET_ARTIFACT,
    TRAINING_SETS,
    Benchmark,
    Count,
    Price,
    Share,
    TrainingSet,
)
from .endpoints import EndpointEntry, EndpointsFile, LocalServer, ServiceSettings
from .loader import available_profiles, load_endpoints, load_profile, read_settings
from .profile import (
    BACKENDS,
    Candidates,
    CausalLM,
    Encoder,
    Evaluation,
    Gguf,
    Goal,
    LiveExpert,
    ModelSource,
    NewExpert,
    PolicySettings,
    Pool,
    PoolUniverse,
    Profile,
    Quantization,
    Redraw,
    Scoring,
    SelfPlay,
    SelfPlayCurve,
    SelfPlayTraining,
    Stacked,
    Strategies,
    Universe,
)

__all__ = [
    "ARTIFACTS",
    "BACKENDS",
    "CONFIG_DIR",
    "DATA_DIR",
    "DEFAULT_PROFILE",
    "ENDPOINTS_DIR",
    "OUTPUT_DIR_ENV",
    "PROFILE_ENV",
    "ROOT",
    "TRAINING_SETS",
    "TRAINING_SET_ARTIFACT",
    "Benchmark",
    "Candidates",
    "CausalLM",
    "Count",
    "Encoder",
    "EndpointEntry",
    "EndpointsFile",
    "Evaluation",
    "Gguf",
    "Goal",
    "LiveExpert",
    "LocalServer",
    "ModelSource",
    "NewExpert",
    "PolicySettings",
    "Pool",
    "PoolUniverse",
    "Price",
    "Profile",
    "Quantization",
    "Redraw",
    "Scoring",
    "SelfPlay",
    "SelfPlayCurve",
    "SelfPlayTraining",
    "ServiceSettings",
    "Share",
    "Stacked",
    "Strategies",
    "TrainingSet",
    "Universe",
    "available_profiles",
    "load_endpoints",
    "load_profile",
    "read_settings",
]
