"""``python -m medshield.serve --model lenet.pt`` (API key in ``$MEDSHIELD_API_KEY``)."""

from medshield.serve.server import _main

_main()
