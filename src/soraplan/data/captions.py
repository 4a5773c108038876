"""Caption processing of the reference's training data: aesthetic notices and caption clean-up.

* Aesthetic notice: an item with an ``aesthetic`` score <= 4.25 gets a sentence saying its quality is
  low, >= 5.75 one saying it is high, put before or after the caption with equal chance. Trained this
  way, a model can be steered at sampling time by adding such a sentence to the prompt. (The sentences
  are ours; the thresholds and placement are the reference's.)
* Clean-up (``clean_caption``): the T5-style normalisation the reference applies to image captions -
  URL-decoding, HTML tags and entities, URLs, @handles, typographic quotes and dashes, bracket and
  quote characters, CJK stroke/compatibility blocks (and CJK ideographs unless ``keep_chinese``, which
  the reference sets for mT5 encoders), repeated punctuation and white space, lower-casing.
  The reference does **not** clean inpaint *video* captions; ``clean_video_captions`` does, for runs
  that want one caption style for both.
"""

from __future__ import annotations

import html
import random
import re
import urllib.parse

LOW_AESTHETIC_THRESHOLD, HIGH_AESTHETIC_THRESHOLD = 4.25, 5.75

AESTHETIC_NOTICES = {
    ("video", "low"): (
        "The video is of low aesthetic quality.",
        "This clip looks poor and unappealing.",
        "The footage has weak visual appeal.",
    ),
    ("video", "high"): (
        "The video is of high aesthetic quality.",
        "This clip looks beautiful and well composed.",
        "The footage has strong visual appeal.",
    ),
    ("image", "low"): (
        "The image is of low aesthetic quality.",
        "This picture looks poor and unappealing.",
        "The photo has weak visual appeal.",
    ),
    ("image", "high"): (
        "The image is of high aesthetic quality.",
        "This picture looks beautiful and well composed.",
        "The photo has strong visual appeal.",
    ),
}


def add_aesthetic_notice(caption: str, score: float | None, is_video: bool, rng: random.Random) -> str:
    """``caption`` with a quality sentence before or after it when ``score`` is low or high."""
    if score is None:
        return caption
    if score <= LOW_AESTHETIC_THRESHOLD:
        level = "low"
    elif score >= HIGH_AESTHETIC_THRESHOLD:
        level = "high"
    else:
        return caption
    notice = rng.choice(AESTHETIC_NOTICES[("video" if is_video else "image", level)])
    return f"{caption} {notice}" if rng.random() < 0.5 else f"{notice} {caption}"


_URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|net|org|io|co|ru|cn|de|uk|jp)(?:/\S*)?\b", re.I)
_TAG = re.compile(r"<[^<>]{0,200}>")
_HANDLE = re.compile(r"(?<![\w@])@[\w.]+")
_CJK_ALWAYS = re.compile("[\u31c0-\u31ef\u31f0-\u31ff\u3200-\u32ff\u3300-\u33ff\u3400-\u4dbf\u4dc0-\u4dff]+")
_CJK_IDEOGRAPHS = re.compile("[\u4e00-\u9fff]+")
_DASHES = re.compile("[\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]")
_DOUBLE_QUOTES = re.compile("[\u201c\u201d\u201e\u201f\u00ab\u00bb\u300c\u300d\u300e\u300f\"]")
_SINGLE_QUOTES = re.compile("[\u2018\u2019\u201a\u201b`\u00b4]")
_BRACKETS = re.compile(r"[\[\]{}()\u3010\u3011\uff08\uff09]")
_REPEATED = re.compile(r"([-_.,!?;:*#~=+])\1+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_SPACES = re.compile(r"\s+")


def clean_caption(text: str, keep_chinese: bool = False) -> str:
    """A normalised, lower-cased caption (see the module docstring for what is removed)."""
    text = urllib.parse.unquote_plus(str(text))
    text = html.unescape(_TAG.sub(" ", text))
    text = _TAG.sub(" ", text)  # tags that were entity-escaped
    text = _URL.sub(" ", text)
    text = _HANDLE.sub(" ", text)
    text = _CJK_ALWAYS.sub(" ", text)
    if not keep_chinese:
        text = _CJK_IDEOGRAPHS.sub(" ", text)
    text = _DASHES.sub("-", text)
    text = _DOUBLE_QUOTES.sub(" ", text)
    text = _SINGLE_QUOTES.sub("'", text)
    text = _BRACKETS.sub(" ", text)
    text = _REPEATED.sub(r"\1", text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return text.strip(" -_*#'").lower()
