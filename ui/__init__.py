"""The Streamlit page, a module per concern (app.py is its outline): resources.py (what is cached),
bundles.py (the browser's bundles, served over HTTP), session.py (the session's state and the model
it shows), serving.py (public mode), controls.py (the latent's controls and decoded images),
atlas_map.py (the map with its concept and neighbour panels), views/ (a module per view below the
map, each with render(context)), startup.py (what the server loads before the first visitor)."""

from ui.startup import hush_no_runtime_warnings

hush_no_runtime_warnings()  # before ui's modules: the server imports them before its runtime exists
