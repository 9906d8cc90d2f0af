"""Visitor captions: one line in plain words per layer, in several languages, and the few words on
the kiosk's controls in the same languages.

English and German are built in (`CAPTIONS`, `WORDS`); the config's `[kiosk.captions.<lang>]`
tables replace or add captions (keyed by layer name, or "model.layer" where a name means something
else in another network, plus "network" for the view of the whole network), so an exhibit can add
French or Dutch without touching code.  The language button cycles through `KioskConfig.languages`.

Only data and look-ups here; which caption shows (the layer in view) is the scene's business.
"""

from __future__ import annotations

from collections.abc import Mapping

CAPTIONS: dict[str, dict[str, str]] = {
    "en": {
        "network": "Your drawing goes in at the bottom. Layer by layer the network looks for "
        "strokes, then shapes, then whole digits. Its answer lights up at the top.",
        "input": "This is what the network sees: your drawing, shrunk to a small square of pixels.",
        "conv1": "Six detectors slide over the picture. Each one lights up where it finds a simple "
        "stroke or edge.",
        "pool1": "Each picture is made smaller. The strongest signals stay, so small shifts do not matter.",
        "conv2": "Sixteen detectors combine strokes into bigger shapes: corners, curves and loops.",
        "pool2": "Smaller again: a rough map of which shapes are where.",
        "fc1": "Every node here looks at all the shapes at once and reacts to its own mix.",
        "fc2": "These nodes weigh the mixes up into evidence for each digit.",
        "output": "One light per digit, 0 to 9. The brightest one is the network's answer.",
        "mlp.fc1": "Every node here looks at every pixel of your drawing at once.",
        "mlp.fc2": "These nodes combine what the nodes below found into evidence for each digit.",
    },
    "de": {
        "network": "Deine Zeichnung kommt unten hinein. Schicht für Schicht sucht das Netz nach "
        "Strichen, dann nach Formen, dann nach ganzen Ziffern. Oben leuchtet seine Antwort.",
        "input": "So sieht das Netz deine Zeichnung: verkleinert auf ein kleines Quadrat aus Pixeln.",
        "conv1": "Sechs Detektoren gleiten über das Bild. Jeder leuchtet dort, wo er einen einfachen "
        "Strich oder eine Kante findet.",
        "pool1": "Jedes Bild wird kleiner. Die stärksten Signale bleiben, kleine Verschiebungen "
        "zählen nicht.",
        "conv2": "Sechzehn Detektoren setzen Striche zu größeren Formen zusammen: Ecken, Bögen, Schleifen.",
        "pool2": "Noch kleiner: eine grobe Karte, welche Formen wo sind.",
        "fc1": "Jeder Knoten hier schaut auf alle Formen zugleich und reagiert auf seine eigene Mischung.",
        "fc2": "Diese Knoten wägen die Mischungen zu Hinweisen auf jede Ziffer ab.",
        "output": "Ein Licht pro Ziffer, 0 bis 9. Das hellste ist die Antwort des Netzes.",
        "mlp.fc1": "Jeder Knoten hier schaut auf jedes Pixel deiner Zeichnung zugleich.",
        "mlp.fc2": "Diese Knoten fassen zusammen, was die Knoten darunter gefunden haben.",
    },
}

# The controls' words per language (config.STRINGS holds the English ones and the keys).
WORDS: dict[str, dict[str, str]] = {
    "de": {
        "title": "Schreib eine Ziffer",
        "attract": "Berühre das Feld und schreibe eine Ziffer",
        "guess": "Das Netz liest",
        "unsure": "schreib eine Ziffer",
        "clear": "Löschen",
        "fit": "Ganz",
        "reset": "Start",
        "hint": "Ziehen dreht das Netz  ·  zwei Finger oder +/- zoomen  ·  tippe auf eine Schicht",
        "close": "Schließen",
        "starting": "Startet...",
        "restarting": "Startet neu...",
        "pin": "Betreiber-PIN",
    },
}

LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "nl": "Nederlands", "it": "Italiano"}


def caption(
    model: str, layer: str, language: str, extra: Mapping[str, Mapping[str, str]] | None = None
) -> str | None:
    """The caption of `layer` ("network" for the whole) in `language`: the config's, else the
    built-in one; None when neither has it."""
    for table in ((extra or {}).get(language, {}), CAPTIONS.get(language, {})):
        for key in (f"{model}.{layer}", layer):
            if table.get(key):
                return table[key]
    return None


def words(language: str, english: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The controls' words in `language`: the config's overrides, else built-in, else English."""
    built_in = WORDS.get(language, {})
    return {key: overrides.get(key) or built_in.get(key) or text for key, text in english.items()}
