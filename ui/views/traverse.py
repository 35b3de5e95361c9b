"""The Traverse view: each dimension swept across its range from the current z, a grid per
decoder shown."""

from __future__ import annotations

import streamlit as st

from explorer.latent import traverse
from explorer.render import decode_latents, grid, png_bytes, upscale
from ui.context import ViewContext
from ui.controls import decoder_caption, unused_latents_sentence
from ui.page_state import chosen_label, state


def render(context: ViewContext) -> None:
    columns = st.slider("Columns", 5, 15, 9, key="traverse_columns")
    low, high = state.ranges
    latents = traverse(context.z, low, high, columns)  # (D, K, D)
    d, k = latents.shape[:2]
    unused = state.inactive
    for folder, decoder in context.decoders:  # one grid per decoder, on the same latents
        images = decode_latents(decoder, latents.reshape(d * k, -1), chosen_label(decoder))
        sheet = grid(images.reshape(d, k, *images.shape[1:]))
        which = f"{decoder_caption(folder, decoder)}: " if len(context.decoders) > 1 else ""
        st.image(
            png_bytes(upscale(sheet, 2)),
            caption=f"{which}Row i sweeps zi from its low to its high end; the other dimensions stay at the current z."
            + (f" {unused_latents_sentence(unused, d)}" if unused else ""),
        )
