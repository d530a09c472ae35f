"""leeroo_lib: the importable library behind the notebooks of this reproduction of the
Leeroo Orchestrator (arXiv 2401.13979). All logic lives here; notebooks call it and plot."""

__version__ = "0.1.0"
