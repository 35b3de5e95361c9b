"""The Noto emoji as an image folder: npm's emoji-datasource-google package, fetched with
`npm pack` (the only download), its 64 × 64 PNGs composited on a white background and written
one folder per category, named by each emoji's short name:

    DIR/
        Smileys & Emotion/grinning.png ...
        People & Body/wave.png  wave~1F3FB.png ...   skin-tone variants: NAME~TONE.png
        ...                                          (nine categories; Component left out)

A `~` joins a variant to its emoji, and training.images keeps files that share the part before
it on the same side of the train/test split: variants differ only in a skin tone, and one in
the test set beside its twin in training would flatter every test figure.

The package is MIT-licensed (iamcal/emoji-data) and its images are Google's Noto Emoji,
Apache-2.0; both licences come with the package (LICENSE, README.md).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from PIL import Image

from training.data import DataError
from training.images import VARIANT_MARK, open_image

PACKAGE = "emoji-datasource-google@16.0.0"
TARBALL = "emoji-datasource-google-16.0.0.tgz"
IMAGES = "package/img/google/64/"  # the 64 × 64 PNGs inside the tarball
INDEX = "package/emoji.json"
LEFT_OUT = ("Component",)  # the five skin-tone swatches: colours, not emoji
BACKGROUND = (255, 255, 255)  # emoji are drawn on white, as on a page
MAX_MEMBER_BYTES = 50_000_000  # far above emoji.json and any PNG of the package: larger is not this package


def fetch_package(cache: str | os.PathLike) -> Path:
    """The package's tarball in CACHE, fetched with `npm pack` when it is not there yet."""
    cache = Path(cache)
    tarball = cache / TARBALL
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"npm is not installed: the emoji come from npm's {PACKAGE}; install Node.js (npm) first.")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "pack", PACKAGE, "--pack-destination", str(cache)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"`npm pack {PACKAGE}` did not finish in 10 minutes; check the connection to npm.") from None
    if done.returncode != 0 or not tarball.is_file():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"`npm pack {PACKAGE}` failed ({last}); it needs npm's registry, reachable from here.")
    return tarball


def read_package(tarball: str | os.PathLike) -> tuple[list[dict], dict[str, bytes]]:
    """(emoji.json's entries, {PNG file name: bytes}) of TARBALL, read in one pass (a .tgz
    cannot seek; nothing is extracted to disk)."""
    pngs, index = {}, None
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for info in archive:
                if not info.isfile() or info.size > MAX_MEMBER_BYTES:
                    continue
                if info.name == INDEX:
                    index = archive.extractfile(info).read()
                elif info.name.startswith(IMAGES) and info.name.endswith(".png"):
                    pngs[info.name[len(IMAGES) :]] = archive.extractfile(info).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"{tarball}: is not a readable .tgz ({e}); delete it and run again.") from None
    if index is None:
        raise DataError(f"{tarball}: has no {INDEX}; is it {PACKAGE}?")
    try:
        entries = json.loads(index)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{tarball}: its emoji.json is not JSON ({e}).") from None
    if not isinstance(entries, list):
        raise DataError(f"{tarball}: its emoji.json is not a list of emoji; is it {PACKAGE}?")
    return entries, pngs


def _on_background(data: bytes, name: str) -> Image.Image:
    """A PNG with alpha -> RGB, composited on BACKGROUND."""
    image = open_image(io.BytesIO(data), name, "RGBA")
    flat = Image.new("RGBA", image.size, BACKGROUND + (255,))
    return Image.alpha_composite(flat, image).convert("RGB")


def emoji_images(index: list[dict]) -> list[tuple[str, str, str]]:
    """(category, file stem, image file in the package) of every emoji Google draws, variants
    included, from the package's emoji.json entries; Component left out."""
    images = []
    for entry in index:
        category = entry.get("category")
        if category in LEFT_OUT or not entry.get("has_img_google") or not category:
            continue
        name = entry["short_name"]
        images.append((category, name, entry["image"]))
        for tone, variant in sorted(entry.get("skin_variations", {}).items()):
            if variant.get("has_img_google"):
                images.append((category, f"{name}{VARIANT_MARK}{tone}", variant["image"]))
    return images


def write_emoji_folder(tarball: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the emoji of TARBALL into OUT, one subfolder per category; returns the count. OUT
    must be new or empty, or hold this very folder (written before: nothing is rewritten)."""
    out = Path(out)
    entries, pngs = read_package(tarball)
    images = emoji_images(entries)
    missing = [file for _, _, file in images if file not in pngs]
    if missing:
        raise DataError(f"{tarball}: lacks {len(missing)} of the images its emoji.json names ({missing[0]}, ...).")
    wanted = {f"{category}/{stem}.png" for category, stem, _ in images}
    if out.exists():
        others = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        others = [p for p in others if p not in wanted and not p.endswith(".part")]
        if others:
            raise DataError(
                f"{out}: already holds {len(others)} other file{'s' if len(others) > 1 else ''} "
                f"({others[0]}), which would join the data set; write the emoji to a new folder."
            )
    for category, stem, file in images:
        path = out / category / f"{stem}.png"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        _on_background(pngs[file], file).save(partial, format="PNG")
        partial.replace(path)  # a folder interrupted midway holds only whole images
    return len(images)
