"""Figures for the README, from a checkpoint: a 10x10 grid of samples from N(0, I) and a
10-step interpolation strip; with --sharpened, SHARPENED.png: test images over the
reconstructions of the checkpoint's decoder and its sharpened sibling's, then the same draws from
the fitted mixture through both; with
--gallery instead of the grid and strip, NAME.png: test images over their reconstructions, then
draws from the fitted mixture (the test images from the atlas: no data set needed). A conditional
model gets the comparison alone, its draws decoded with the classes in turn. Looking at them is
how we check that samples read as digits. With --neighbours, NAME-neighbours.png: test images over
their reconstructions and the training images whose encoder means are nearest theirs (what a
latent leaves open; it reads the data set). With --decoders, NAME-decoders.png: the same mixture
draws through the checkpoint's decoder and each of several sharpened ones, a row each (recipes
side by side).

    python docs/make_figures.py checkpoints/mnist-z8 [--sharpened checkpoints/mnist-z8-sharp]
    python docs/make_figures.py checkpoints/emoji-rgb-z8 --gallery [--sharpened checkpoints/emoji-rgb-z8-sharp]
    python docs/make_figures.py checkpoints/emoji-rgb-z8 --neighbours --sharpened checkpoints/emoji-rgb-z8-sharp
    python docs/make_figures.py checkpoints/mnist-z8 --decoders checkpoints/mnist-z8-sharp runs/budget-1.2
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
from explorer.atlas import Atlas, load_atlas  # noqa: E402
from explorer.latent import interpolate, sample_prior  # noqa: E402
from explorer.render import decode_latents, grid, png_bytes, strip, to_uint8, upscale  # noqa: E402
from training.evaluate import checkpoint_data, nearest_neighbours  # noqa: E402
from training.sampler import load_sampler  # noqa: E402

NEIGHBOURS = 4  # training images shown per test image, and averaged


def test_tiles(model: training.ConvVAE, atlas: Atlas, rows: np.ndarray) -> np.ndarray:
    """The atlas's thumbnails of test images ROWS: (len(rows), H, W, C) uint8."""
    _, height, width = model.config.image_shape
    sheet = np.asarray(Image.open(io.BytesIO(atlas.thumbnails)).convert("RGB" if model.config.channels == 3 else "L"))
    return np.stack([
        sheet[(r // atlas.thumbnail_columns) * height : (r // atlas.thumbnail_columns + 1) * height,
              (r % atlas.thumbnail_columns) * width : (r % atlas.thumbnail_columns + 1) * width]
        for r in rows
    ]).reshape(len(rows), height, width, -1)  # fmt: skip


def gallery(model: training.ConvVAE, checkpoint: str, out: Path, seed: int, columns: int = 12) -> Path:
    """OUT/NAME.png: two rows of test images, each over its reconstruction, then two rows of
    draws from the fitted mixture; every tile at twice its size."""
    d = model.config.latent_dim
    atlas = load_atlas(checkpoint, d)
    rows = np.random.default_rng(seed).choice(len(atlas), 2 * columns, replace=False)
    tiles = test_tiles(model, atlas, rows)
    reconstructions = decode_latents(model, atlas.means[rows])
    draws = decode_latents(model, load_sampler(checkpoint, d).sample(np.random.default_rng(seed), 2 * columns))
    lines = [tiles[:columns], reconstructions[:columns], tiles[columns:], reconstructions[columns:],
             draws[:columns], draws[columns:]]  # fmt: skip
    path = out / f"{Path(checkpoint).name}.png"
    path.write_bytes(png_bytes(upscale(grid(np.stack(lines)), 2)))
    return path


def decoded(model: training.ConvVAE, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) of latents Z (N, D); a conditional model decodes each with its
    class in LABELS (N,)."""
    if not model.config.num_classes:
        return decode_latents(model, z)
    return np.concatenate([decode_latents(model, z[i], int(label)) for i, label in enumerate(labels)])


def comparison(
    model: training.ConvVAE, checkpoint: str, sharpened: str, out: Path, seed: int, columns: int = 12
) -> Path:
    """OUT/SHARPENED.png: a row of test images, their reconstructions through the VAE's decoder
    and through the sharpened one; then two rows of the same mixture draws through each (a
    conditional model's: the classes in turn, column by column)."""
    d = model.config.latent_dim
    atlas = load_atlas(checkpoint, d)
    rows = np.random.default_rng(seed).choice(len(atlas), columns, replace=False)
    draws = load_sampler(checkpoint, d).sample(np.random.default_rng(seed), 2 * columns)
    classes = np.arange(columns) % max(model.config.num_classes, 1)
    decoders = (model, training.load_model(sharpened))
    lines = [test_tiles(model, atlas, rows)]
    lines += [decoded(decoder, atlas.means[rows], atlas.labels[rows]) for decoder in decoders]
    for half in (draws[:columns], draws[columns:]):
        lines += [decoded(decoder, half, classes) for decoder in decoders]
    path = out / f"{Path(sharpened).name}.png"
    path.write_bytes(png_bytes(upscale(grid(np.stack(lines)), 2)))
    return path


def decoder_rows(model: training.ConvVAE, checkpoint: str, others: list[str], out: Path, seed: int) -> Path:
    """OUT/NAME-decoders.png: a row of 16 mixture draws through MODEL's decoder, then a row of
    the same draws through each checkpoint in OTHERS (sharpened siblings: the same latent space)."""
    columns = 16
    draws = load_sampler(checkpoint, model.config.latent_dim).sample(np.random.default_rng(seed), columns)
    classes = np.arange(columns) % max(model.config.num_classes, 1)
    decoders = [model] + [training.load_model(path) for path in others]
    lines = [decoded(decoder, draws, classes) for decoder in decoders]
    path = out / f"{Path(checkpoint).name}-decoders.png"
    path.write_bytes(png_bytes(upscale(grid(np.stack(lines)), 2)))
    return path


def neighbours(model: training.ConvVAE, args: argparse.Namespace, columns: int = 10) -> Path:
    """OUT/NAME-neighbours.png, a column per test image: the image, its reconstructions (the
    VAE's, then ARGS.sharpened's), the mean of the NEIGHBOURS training images whose encoder
    means are nearest its own, and those images, nearest first."""
    train, test = checkpoint_data(model, args.data_dir)
    rows = np.sort(np.random.default_rng(args.seed).choice(len(test), columns, replace=False))
    labels = test.labels[rows].numpy()
    mu, _ = training.encode_dataset(model, test.images[rows], test.labels[rows] if model.config.num_classes else None)
    train_mu, _ = training.encode_dataset(model, train.images, train.labels if model.config.num_classes else None)
    nearest = nearest_neighbours(train_mu, mu, NEIGHBOURS)
    decoders = [model] + ([training.load_model(args.sharpened)] if args.sharpened else [])
    lines = [to_uint8(test.images[rows])]
    lines += [decoded(decoder, mu.numpy(), labels) for decoder in decoders]
    lines.append(to_uint8(train.images[nearest].mean(1)))
    lines += [to_uint8(train.images[nearest[:, j]]) for j in range(NEIGHBOURS)]
    path = Path(args.out) / f"{Path(args.checkpoint).name}-neighbours.png"
    path.write_bytes(png_bytes(upscale(grid(np.stack(lines)), 2)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sharpened", help="a sharpened sibling: writes NAME.png, the same latents through both")
    parser.add_argument("--gallery", action="store_true", help="write NAME.png, test images, reconstructions, draws")
    parser.add_argument(
        "--neighbours",
        action="store_true",
        help="write NAME-neighbours.png alone: test images' nearest training images",
    )
    parser.add_argument("--data-dir", help="where the data set is, for --neighbours")
    parser.add_argument(
        "--decoders", nargs="+", metavar="SHARPENED", help="write NAME-decoders.png alone: draws through each"
    )
    args = parser.parse_args()
    model = training.load_model(args.checkpoint)
    d = model.config.latent_dim
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.neighbours:
        print(f"wrote {neighbours(model, args)}")
        return
    if args.decoders:
        print(f"wrote {decoder_rows(model, args.checkpoint, args.decoders, out, args.seed)}")
        return
    if args.gallery:
        print(f"wrote {gallery(model, args.checkpoint, out, args.seed)}")
    elif not model.config.num_classes:  # a conditional model's figure is the comparison alone
        samples = decode_latents(model, sample_prior(rng, d, 100))
        (out / "samples.png").write_bytes(png_bytes(upscale(grid(samples.reshape(10, 10, *samples.shape[1:])), 2)))
        z0, z1 = sample_prior(rng, d), sample_prior(rng, d)
        frames = decode_latents(model, interpolate(z0, z1, 10, "slerp"))
        (out / "interpolation.png").write_bytes(png_bytes(upscale(strip(frames), 2)))
        print(f"wrote {out / 'samples.png'} and {out / 'interpolation.png'}")
    if args.sharpened:
        print(f"wrote {comparison(model, args.checkpoint, args.sharpened, out, args.seed)}")


if __name__ == "__main__":
    main()
