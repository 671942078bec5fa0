// The map: a MapLibre style built here, with no external style, glyphs, sprites or tiles (the
// agency's network may be offline). Everything drawn comes from the API as GeoJSON sources,
// updated with setData; nothing is a DOM marker, so 2,000 vehicles cost one draw call.

import { Map as MapLibreMap, NavigationControl, Popup, ScaleControl, setWorkerUrl } from 'maplibre-gl';
import { ratioColourExpression } from './scale.js';

export const KIND_COLOURS = { walkthrough: '#1d4ed8', remote_sensing: '#0f766e', emergency: '#111827' };
export const SEVERITY_COLOURS = { critical: '#7f1d1d', warning: '#c2410c', info: '#1e40af' };
const EMPTY = { type: 'FeatureCollection', features: [] };

/** The style: a plain background, the optional basemap, then our layers bottom to top. */
export function buildStyle(basemapUrl) {
  const sources = {
    segments: { type: 'geojson', data: EMPTY, promoteId: 'id' },
    streets: { type: 'geojson', data: EMPTY },
    incidents: { type: 'geojson', data: EMPTY },
    alerts: { type: 'geojson', data: EMPTY, promoteId: 'id' },
    vehicles: { type: 'geojson', data: EMPTY },
    emitters: { type: 'geojson', data: EMPTY },
  };
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': '#eef1f5' } }];
  if (basemapUrl) {
    sources.basemap = { type: 'raster', tiles: [basemapUrl], tileSize: 256 };
    layers.push({ id: 'basemap', type: 'raster', source: 'basemap' });
  }
  const byKind = (prop, values, fallback) => ['match', ['get', prop], ...Object.entries(values).flat(), fallback];
  layers.push(
    {
      id: 'incident-cells',
      type: 'fill',
      source: 'incidents',
      filter: ['==', ['get', 'feature'], 'cell'],
      paint: {
        'fill-color': byKind('severity', SEVERITY_COLOURS, '#64748b'),
        'fill-opacity': 0.35,
      },
    },
    {
      id: 'incident-cell-lines',
      type: 'line',
      source: 'incidents',
      filter: ['==', ['get', 'feature'], 'cell'],
      paint: { 'line-color': '#334155', 'line-width': 1 },
    },
    {
      id: 'incident-axis',
      type: 'line',
      source: 'incidents',
      filter: ['==', ['get', 'feature'], 'downwind_axis'],
      paint: { 'line-color': '#111827', 'line-width': 2, 'line-dasharray': [3, 2] },
    },
    {
      id: 'segment-casing',
      type: 'line',
      source: 'segments',
      minzoom: 13,
      layout: { 'line-cap': 'round', 'line-join': 'round' },
      paint: { 'line-color': '#475569', 'line-width': ['interpolate', ['linear'], ['zoom'], 10, 2, 16, 9] },
    },
    {
      id: 'segments',
      type: 'line',
      source: 'segments',
      layout: { 'line-cap': 'round', 'line-join': 'round' },
      paint: {
        // The ratio a live update set (feature state), else the one loaded with the network.
        'line-color': ratioColourExpression(['coalesce', ['feature-state', 'ratio'], ['get', 'ratio']]),
        'line-width': ['interpolate', ['linear'], ['zoom'], 10, 1, 13, 3, 16, 6],
      },
    },
    {
      // Street names along whole streets (streets.js). The style has no glyphs URL: MapLibre
      // draws every glyph with the browser's own fonts (TinySDF), so names need no other host.
      id: 'street-names',
      type: 'symbol',
      source: 'streets',
      minzoom: 12,
      layout: {
        'symbol-placement': 'line',
        'text-field': ['get', 'name'],
        'text-font': ['sans-serif'],
        'text-size': 12,
        'symbol-spacing': 400,
      },
      paint: { 'text-color': '#0f172a', 'text-halo-color': '#ffffff', 'text-halo-width': 1.5 },
    },
    {
      id: 'incident-source',
      type: 'circle',
      source: 'incidents',
      filter: ['==', ['get', 'feature'], 'source'],
      paint: { 'circle-radius': 8, 'circle-color': '#000000', 'circle-stroke-color': '#facc15', 'circle-stroke-width': 3 },
    },
    {
      id: 'vehicles',
      type: 'circle',
      source: 'vehicles',
      paint: {
        'circle-radius': [
          'interpolate', ['linear'], ['zoom'],
          10, ['match', ['get', 'kind'], 'remote_sensing', 3, 2],
          14, ['match', ['get', 'kind'], 'remote_sensing', 7, 5],
        ],
        'circle-color': byKind('kind', KIND_COLOURS, '#64748b'),
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 10, 0.5, 14, 1.5],
      },
    },
    {
      id: 'emitters',
      type: 'circle',
      source: 'emitters',
      paint: { 'circle-radius': 6, 'circle-color': '#db2777', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 },
    },
    {
      id: 'alerts',
      type: 'circle',
      source: 'alerts',
      paint: {
        'circle-radius': ['match', ['get', 'severity'], 'critical', 11, 'warning', 9, 7],
        'circle-color': byKind('severity', SEVERITY_COLOURS, '#1e40af'),
        'circle-opacity': ['case', ['==', ['get', 'status'], 'open'], 0.95, 0.5],
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': 3,
      },
    },
  );
  return { version: 8, sources, layers };
}

/** Creates the map in ``container``; resolves once the style is loaded. */
export function createMap(container, { basemapUrl, workerUrl, center = [116.32, 39.98], zoom = 13 }) {
  setWorkerUrl(workerUrl);
  const map = new MapLibreMap({
    container,
    style: buildStyle(basemapUrl),
    center,
    zoom,
    attributionControl: false,
    localIdeographFontFamily: 'sans-serif',
    // The screenshot of the tests (and a browser's print) needs the drawn frame kept.
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  map.addControl(new NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new ScaleControl(), 'bottom-right');
  return new Promise((resolve) => map.once('load', () => resolve(map)));
}

export function setData(map, source, collection) {
  map.getSource(source).setData(collection);
}

/** The bounds of ``collection`` (lines and points), or null when it is empty. */
export function boundsOf(collection) {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  const visit = (c) => {
    if (typeof c[0] === 'number') {
      minX = Math.min(minX, c[0]);
      maxX = Math.max(maxX, c[0]);
      minY = Math.min(minY, c[1]);
      maxY = Math.max(maxY, c[1]);
    } else {
      c.forEach(visit);
    }
  };
  for (const f of collection.features) visit(f.geometry.coordinates);
  return minX === Infinity ? null : [[minX, minY], [maxX, maxY]];
}

/** A popup with ``html`` at ``lngLat``. */
export function showPopup(map, lngLat, node) {
  return new Popup({ closeButton: true, maxWidth: '320px' }).setLngLat(lngLat).setDOMContent(node).addTo(map);
}
