// The road network as the page holds it: one row per segment, built from the columns of the
// geometry listing (GET /api/v1/segments/geometry, fetched once per import and cached by the
// browser), with the recent statistics (GET /api/v1/segments/recent) laid over it.

/** ``network`` (the geometry listing) → one row per segment, without readings:
 * ``{id, name, road_ref, geometry, mean: null, readings: 0}``, in the listing's (id) order.
 * Segment ``i`` has the next ``points[i]`` lon, lat pairs of the flat ``coordinates``. */
export function networkRows(network) {
  const { ids, names, road_refs: refs, points, coordinates: flat } = network;
  const rows = new Array(ids.length);
  let k = 0;
  for (let i = 0; i < ids.length; i += 1) {
    const coordinates = new Array(points[i]);
    for (let j = 0; j < points[i]; j += 1, k += 2) coordinates[j] = [flat[k], flat[k + 1]];
    rows[i] = {
      id: ids[i],
      name: names[i],
      road_ref: refs[i],
      geometry: { type: 'LineString', coordinates },
      mean: null,
      readings: 0,
    };
  }
  return rows;
}

/** The recent statistics' columns → ``[{id, mean, readings}]``, one per segment with readings. */
export function statItems(recent) {
  return recent.ids.map((id, i) => ({ id, mean: recent.means[i], readings: recent.readings[i] }));
}

/** Sets ``mean`` and ``readings`` of the rows in ``byId`` from ``items``, clearing them first
 * on every row of ``rows``: a segment absent from ``items`` has no readings in the window.
 * Items of unknown segments (imported since the network was loaded) are skipped. */
export function applyStats(rows, byId, items) {
  for (const row of rows) {
    row.mean = null;
    row.readings = 0;
  }
  for (const item of items) {
    const row = byId.get(item.id);
    if (!row) continue;
    row.mean = item.mean;
    row.readings = item.readings;
  }
}
