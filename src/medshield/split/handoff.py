"""Sealed hand-off: the device half travels between devices through the server, encrypted.

In vanilla split learning (Gupta and Raskar 2018) the device half's weights pass from one
device to the next between turns; :class:`~medshield.split.server.SplitServer` relays them.
A server that holds those weights can invert every activation it receives through them
(:class:`~medshield.attacks.privacy.WhiteBoxInversion`: undefended digits come back exactly,
PGSL's pixel-attacked ones to SSIM 0.90 in ``medshield reproduce pgsl``). With a
:class:`HandoffSeal` the devices encrypt the hand-off with a key the server does not hold
(AES-256-GCM, a fresh random 96-bit nonce per seal), so the server relays an opaque blob and
is back to the black-box attacker (a decoder trained on auxiliary data).

Integrity and freshness: the blob authenticates a turn counter (as associated data and inside
the plaintext); a device refuses a blob sealed under another key, a tampered blob, and one
whose counter is below the highest it has seen, so the server cannot roll the devices back to
an older device half undetected. It can still drop or delay turns, and a device that colludes
with the server hands it the key. The key is 32 bytes from :func:`secrets.token_bytes`
(:meth:`HandoffSeal.generate`), shared by the devices out of band (a file readable by its
owner only); it is never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from medshield.split.protocol import SplitProtocolError
from medshield.transport import codec

__all__ = ["HandoffSeal", "KEY_BYTES"]

KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD = b"medshield-split-handoff/v1"


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - cryptography is a core dependency
        raise RuntimeError("the sealed hand-off needs the 'cryptography' package "
                           "(pip install cryptography)") from None
    return AESGCM(key)


class HandoffSeal:
    """Encrypt and authenticate the device-half hand-off with a key shared by the devices.

    Parameters
    ----------
    key
        32 secret bytes (:meth:`generate`, :meth:`load`).

    Examples
    --------
    >>> import torch
    >>> seal = HandoffSeal.generate()
    >>> blob = seal.seal({"model": {"w": torch.ones(2)}}, counter=1)
    >>> sorted(blob), type(blob["sealed"]).__name__
    (['counter', 'sealed'], 'bytes')
    >>> state, counter = seal.open(blob)
    >>> state["model"]["w"].tolist(), counter
    ([1.0, 1.0], 1)
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"a hand-off key is {KEY_BYTES} bytes; got "
                             f"{len(key) if isinstance(key, bytes | bytearray) else type(key)}")
        self._aead = _aesgcm(bytes(key))
        self.highest_seen = 0

    def __repr__(self) -> str:  # never the key
        return f"HandoffSeal(highest_seen={self.highest_seen})"

    @classmethod
    def generate(cls) -> HandoffSeal:
        """A seal with a fresh key from the OS's entropy (:func:`secrets.token_bytes`)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @staticmethod
    def write_key(path: str | Path) -> Path:
        """Write a fresh key to ``path`` (created with mode 0600; refuses to overwrite)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        return path

    @classmethod
    def load(cls, path: str | Path) -> HandoffSeal:
        """A seal with the key in ``path`` (written by :meth:`write_key`)."""
        try:
            key = Path(path).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"no hand-off key at {path}; create one with "
                             "'medshield split keygen --out FILE' and copy it to every "
                             "device (not to the server)") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte hand-off "
                             "key; regenerate it with 'medshield split keygen'")
        return cls(key)

    def seal(self, state: dict[str, Any], counter: int) -> dict[str, Any]:
        """``{"sealed": nonce + ciphertext, "counter": counter}`` for the server to relay."""
        if counter < 1:
            raise ValueError(f"the hand-off counter starts at 1, got {counter}")
        plain = codec.encode({"state": state, "counter": int(counter)})
        nonce = secrets.token_bytes(_NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, plain, _AAD + int(counter).to_bytes(8, "big"))
        self.highest_seen = max(self.highest_seen, int(counter))
        return {"sealed": blob, "counter": int(counter)}

    def open(self, message: Any) -> tuple[dict[str, Any], int]:
        """The state and counter of a sealed hand-off; :class:`SplitProtocolError` if it is
        not sealed, sealed under another key, tampered with, or older than one already seen."""
        if not isinstance(message, dict) or not isinstance(message.get("sealed"), bytes) \
                or not isinstance(message.get("counter"), int):
            raise SplitProtocolError(
                "this device expects a sealed hand-off (it holds a hand-off key) but the "
                "server relayed a plaintext or malformed state; give every device the same key "
                "file, or none of them")
        counter = int(message["counter"])
        blob = message["sealed"]
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                       _AAD + counter.to_bytes(8, "big"))
        except (InvalidTag, ValueError, OverflowError):
            raise SplitProtocolError(
                "the hand-off does not authenticate: it was sealed with another key or altered "
                "on the way (every device needs the same key file)") from None
        inner = codec.decode(plain)
        if inner.get("counter") != counter:  # pragma: no cover - authenticated above
            raise SplitProtocolError("the hand-off's counter does not match its contents")
        if counter < self.highest_seen:
            raise SplitProtocolError(
                f"the server relayed hand-off {counter} after this device saw "
                f"{self.highest_seen}: an older device half (a rollback); refusing it")
        self.highest_seen = counter
        return inner["state"], counter
