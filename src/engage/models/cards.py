"""Model cards: a JSON file beside each shipped weights file saying how it was made and how well it scores.

The card records the sha256 of the weights file; loading a model with a card checks it and refuses a mismatch.
"""

from __future__ import annotations

import json
import os

from engage.errors import EngageError
from engage.io.files import write_text


def card_path(weights_path: str) -> str:
    """weights/engagement.safetensors -> weights/engagement.json"""
    return os.path.splitext(weights_path)[0] + ".json"


def read_card(weights_path: str) -> dict | None:
    """The card beside a weights file, or None when it has none; a damaged card is an EngageError."""
    path = card_path(weights_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            card = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise EngageError(f"{path}: damaged model card ({error}); reinstall engage or restore the file") from None
    if not isinstance(card, dict):
        raise EngageError(f"{path}: not a model card (expected a JSON object)")
    return card


def verify_weights(weights_path: str, card: dict) -> None:
    """Refuse weights whose sha256 differs from their card's."""
    from engage.models.checkpoint import sha256_of

    expected = card.get("sha256")
    if not expected:
        raise EngageError(f"{card_path(weights_path)}: model card without the weights' sha256")
    actual = sha256_of(weights_path)
    if actual != expected:
        raise EngageError(
            f"{weights_path}: sha256 {actual[:12]}... does not match its model card ({expected[:12]}...): "
            "the weights were altered or corrupted; reinstall engage or restore the file"
        )


def write_card(weights_path: str, card: dict) -> dict:
    """Write the card beside the weights, adding their sha256 and size; returns the card written."""
    from engage.models.checkpoint import sha256_of

    card = dict(
        card,
        file=os.path.basename(weights_path),
        sha256=sha256_of(weights_path),
        size_bytes=os.path.getsize(weights_path),
    )
    write_text(card_path(weights_path), json.dumps(card, indent=1) + "\n")
    return card
