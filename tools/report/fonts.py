"""The pages' font, embedded: DejaVu Sans as matplotlib ships it, cut to the page's characters.

Why embed: a page that names a font the reader lacks falls back to whatever the machine has,
and Arabic then comes out in another face than the charts', or as boxes. Why DejaVu Sans: it
has Latin and Arabic, and it is the charts' font, in the package the report needs anyway. Why
a subset: the whole face is 750 kB a weight; the page's own characters, with every glyph the
Arabic joining forms reach (fontTools follows the substitutions), are a few dozen.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib
from fontTools import subset
from fontTools.ttLib import TTFont

FAMILY = "Report Sans"
_FACES = {400: "DejaVuSans.ttf", 700: "DejaVuSans-Bold.ttf"}


def _subset(path: Path, text: str) -> bytes:
    options = subset.Options()
    options.layout_features = ["*"]  # Arabic joining, ligatures and marks: all of them
    options.name_IDs = ["*"]
    options.drop_tables += ["FFTM"]  # FontForge's timestamps: of no use to a browser
    font = TTFont(str(path), recalcTimestamp=False)  # the same bytes for the same page
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def font_face_css(text: str) -> str:
    """@font-face rules (regular and bold) holding just the glyphs `text` needs, inline."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    rules = []
    for weight, name in _FACES.items():
        data = base64.b64encode(_subset(folder / name, text)).decode("ascii")
        rules.append(
            f'@font-face{{font-family:"{FAMILY}";font-weight:{weight};'
            f'src:url(data:font/ttf;base64,{data}) format("truetype")}}'
        )
    return "".join(rules)
