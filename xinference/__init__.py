"""xinference: serve LLMs on your own machines behind an OpenAI-compatible API."""

from . import _version

__version__: str = _version.get_versions()["version"]
