"""Road networks: reading GeoJSON and OpenStreetMap files, splitting roads into segments."""

from telemetry.roads.geojson import read_geojson
from telemetry.roads.model import Road, Segment
from telemetry.roads.osm import read_osm
from telemetry.roads.split import split_road, split_roads

__all__ = ["Road", "Segment", "read_geojson", "read_osm", "split_road", "split_roads"]
