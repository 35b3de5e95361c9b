"""Printed digits for training a digit model: the digits bench/handwriting.py renders from the
fonts Debian packages, of some of the font designs; the others are the benchmark's, so a
model trained with these is measured on fonts it never saw.

    split = printed_training_digits(copies=2, image_shape=(1, 28, 28))   # Split, 2 × N images

A design is a family of faces (DejaVuSerif-BoldItalic, DejaVuSerifCondensed -> DejaVuSerif),
metric clones of one typeface counted as one (Liberation Serif, Nimbus Roman and FreeSerif are
all Times); a design is on the training side when the CRC-32 of its name is even. The digits
are kept as one sheet of ink-on-paper images (printed_digits.png, their labels and faces in
printed_digits.json), prepared for the model as the page prepares an upload
(training.images.model_input), so they look to the model as a user's printed digit would.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.data import DataError, Split
from training.images import model_input

SHEET_FOLDER = Path(__file__).resolve().parent
SHEET_NAME = "printed_digits"
SHEET_COLUMNS = 40
# a face's weight and style, where its file name runs them into the family's (FreeSerifBoldItalic)
STYLE_SUFFIX = re.compile(r"(Bold|Oblique|Italic|BI|Bd|It)+$")
WIDTH_SUFFIX = re.compile(r"(Condensed|Narrow)$")
# families that copy one design's shapes (metric clones): one design, on one side of the split
SAME_DESIGN = {
    "FreeSerif": "Times",
    "LiberationSerif": "Times",
    "NimbusRoman": "Times",
    "FreeSans": "Helvetica",
    "LiberationSans": "Helvetica",
    "NimbusSans": "Helvetica",
    "breipfont": "Breip",
}


def font_design(face: str) -> str:
    """The design of a font file's stem: the part before its first '-' or '_', less a weight,
    style or width run into it, clones under one name ('FreeSansBoldOblique' -> 'Helvetica',
    'DejaVuSerifCondensed-Bold' -> 'DejaVuSerif', 'LinLibertine_RBI' -> 'LinLibertine')."""
    head = re.split(r"[-_]", face)[0]
    head = WIDTH_SUFFIX.sub("", STYLE_SUFFIX.sub("", head) or head)
    return SAME_DESIGN.get(head, head)


def is_training_design(design: str) -> bool:
    """Whether a font design's digits are for training (True) or for measuring (False)."""
    return zlib.crc32(design.encode()) % 2 == 0


def write_sheet(
    folder: Path, name: str, images: list[Image.Image], labels: list[int], sources: list[str] | None = None
) -> None:
    """FOLDER/NAME.png, the equal-sized square IMAGES in rows of SHEET_COLUMNS, and their labels
    (and the faces they came from, SOURCES) in FOLDER/NAME.json."""
    side = images[0].width
    rows = math.ceil(len(images) / SHEET_COLUMNS)
    sheet = Image.new("L", (SHEET_COLUMNS * side, rows * side), 255)
    for i, image in enumerate(images):
        sheet.paste(image, ((i % SHEET_COLUMNS) * side, (i // SHEET_COLUMNS) * side))
    folder.mkdir(parents=True, exist_ok=True)
    sheet.save(folder / f"{name}.png", optimize=True)
    record = {"side": side, "columns": SHEET_COLUMNS, "labels": labels}
    if sources is not None:
        record["sources"] = sources
    (folder / f"{name}.json").write_text(json.dumps(record) + "\n")


def read_sheet(folder: Path, name: str) -> tuple[list[Image.Image], np.ndarray]:
    """The images and labels write_sheet wrote."""
    try:
        record = json.loads((folder / f"{name}.json").read_text())
        sheet = Image.open(folder / f"{name}.png")
        sheet.load()
    except (OSError, ValueError) as error:
        message = f"{folder / name}: cannot read the digit sheet ({error}); restore it from the repository."
        raise DataError(message) from error
    side, columns = record["side"], record["columns"]
    images = [
        sheet.crop(((i % columns) * side, (i // columns) * side, (i % columns + 1) * side, (i // columns + 1) * side))
        for i in range(len(record["labels"]))
    ]
    return images, np.asarray(record["labels"], dtype=np.int64)


def printed_training_digits(copies: int, image_shape: tuple[int, int, int]) -> Split:
    """The training families' digits, each COPIES times, prepared for a model of IMAGE_SHAPE
    (1, side, side): images (COPIES·N, 1, side, side) in [0, 1], labels (COPIES·N,)."""
    channels, side, _ = image_shape
    if channels != 1:
        raise DataError(f"printed digits are gray; this model's images have {channels} channels.")
    images, labels = read_sheet(SHEET_FOLDER, SHEET_NAME)
    x = torch.from_numpy(np.stack([model_input(image, 1, side, digits=True) for image in images]))
    y = torch.from_numpy(labels)
    return Split(images=x.float().repeat(copies, 1, 1, 1), labels=y.repeat(copies))
