"""Figures for the README, from a checkpoint: a 10x10 grid of samples from N(0, I) and a
10-step interpolation strip; with --sharpened, the same 8 × 8 latents (draws from the fitted
mixture) through the checkpoint's decoder and its sharpened sibling's, side by side; with
--gallery instead of the grid and strip, NAME.png: test images over their reconstructions, then
draws from the fitted mixture (the test images from the atlas: no data set needed). Looking at
them is how we check that samples read as digits.

    python docs/make_figures.py checkpoints/mnist-z8 [--sharpened checkpoints/mnist-z8-sharp]
    python docs/make_figures.py checkpoints/emoji-rgb-z8 --gallery [--sharpened checkpoints/emoji-rgb-z8-sharp]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from explorer.atlas import load_atlas  # noqa: E402
from explorer.latent import interpolate, sample_prior  # noqa: E402
from explorer.render import decode_latents, grid, png_bytes, strip, upscale  # noqa: E402
from training.sampler import load_sampler  # noqa: E402


def gallery(model: training.ConvVAE, checkpoint: str, out: Path, seed: int, columns: int = 12) -> Path:
    """OUT/NAME.png: two rows of test images, each over its reconstruction, then two rows of
    draws from the fitted mixture; every tile at twice its size."""
    d = model.config.latent_dim
    atlas = load_atlas(checkpoint, d)
    _, height, width = model.config.image_shape
    sheet = np.asarray(Image.open(io.BytesIO(atlas.thumbnails)).convert("RGB" if model.config.channels == 3 else "L"))
    rows = np.random.default_rng(seed).choice(len(atlas), 2 * columns, replace=False)
    tiles = np.stack([
        sheet[(r // atlas.thumbnail_columns) * height : (r // atlas.thumbnail_columns + 1) * height,
              (r % atlas.thumbnail_columns) * width : (r % atlas.thumbnail_columns + 1) * width]
        for r in rows
    ]).reshape(len(rows), height, width, -1)  # fmt: skip
    reconstructions = decode_latents(model, atlas.means[rows])
    draws = decode_latents(model, load_sampler(checkpoint, d).sample(np.random.default_rng(seed), 2 * columns))
    lines = [tiles[:columns], reconstructions[:columns], tiles[columns:], reconstructions[columns:],
             draws[:columns], draws[columns:]]  # fmt: skip
    path = out / f"{Path(checkpoint).name}.png"
    path.write_bytes(png_bytes(upscale(grid(np.stack(lines)), 2)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sharpened", help="a sharpened sibling: writes NAME.png, the same latents through both")
    parser.add_argument("--gallery", action="store_true", help="write NAME.png, test images, reconstructions, draws")
    args = parser.parse_args()
    model = training.load_model(args.checkpoint)
    d = model.config.latent_dim
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    if args.gallery:
        print(f"wrote {gallery(model, args.checkpoint, out, args.seed)}")
    else:
        samples = decode_latents(model, sample_prior(rng, d, 100))
        (out / "samples.png").write_bytes(png_bytes(upscale(grid(samples.reshape(10, 10, *samples.shape[1:])), 2)))
        z0, z1 = sample_prior(rng, d), sample_prior(rng, d)
        frames = decode_latents(model, interpolate(z0, z1, 10, "slerp"))
        (out / "interpolation.png").write_bytes(png_bytes(upscale(strip(frames), 2)))
        print(f"wrote {out / 'samples.png'} and {out / 'interpolation.png'}")
    if args.sharpened:
        sampler = load_sampler(args.checkpoint, d)
        z = sampler.sample(np.random.default_rng(args.seed), 64)
        sheets = []
        for decoder in (model, training.load_model(args.sharpened)):
            images = decode_latents(decoder, z)  # (64, H, W, C)
            sheets.append(grid(images.reshape(8, 8, *images.shape[1:])))
        gap = np.full((sheets[0].shape[0], 8, *sheets[0].shape[2:]), 255, np.uint8)
        path = out / f"{Path(args.sharpened).name}.png"
        path.write_bytes(png_bytes(upscale(np.concatenate([sheets[0], gap, sheets[1]], axis=1), 2)))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
