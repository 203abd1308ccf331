"""medshield: privacy-preserving and robust machine learning for medical IoT data.

The public API is what ``__all__`` reaches. Components (datasets, models, attacks, defences,
protocols) are built by name through :func:`create`.
"""

from medshield.registry import create, get_registry

__version__ = "0.1.0"

__all__ = ["__version__", "create", "get_registry"]
