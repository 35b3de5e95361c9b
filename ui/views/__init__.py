"""The views below the map, a module each with render(context: ui.context.ViewContext); VIEWS
maps the View control's names (explorer.params.VIEWS, in the link) to them."""

from ui.views import anomaly, interpolate, training, traverse

VIEWS = {"interpolate": interpolate, "traverse": traverse, "anomaly": anomaly, "training": training}
