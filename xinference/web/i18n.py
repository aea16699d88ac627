"""Page texts in English and Simplified Chinese, read from `locales/<lang>.json`.

The texts are looked up on the server, not by Gradio's own I18n: messages made by
event handlers (progress, errors, speeds) must follow the same in-page language
switch as the labels, and only the server sees that switch's value in a handler.
"""

import json
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Dict, Optional

LANGUAGES = MappingProxyType({"en": "English", "zh-CN": "简体中文"})
DEFAULT_LANGUAGE = "en"
_LOCALES = Path(__file__).with_name("locales")


@cache
def load_locale(lang: str) -> Dict[str, str]:
    with open(_LOCALES / f"{lang}.json", encoding="utf-8") as f:
        return json.load(f)


def pick_language(accept_language: Optional[str]) -> str:
    """The first language of an Accept-Language header that we have texts for."""
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):
            # zh-TW and zh-HK readers manage Simplified Chinese better than English, mostly.
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


class Translator:
    """`t("key", name=...)`: the text in `lang`, else in English, else the key itself."""

    def __init__(self, lang: Optional[str]):
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE

    def __call__(self, key: str, **params: object) -> str:
        text = load_locale(self.lang).get(key) or load_locale(DEFAULT_LANGUAGE).get(key) or key
        return text.format(**params) if params else text
