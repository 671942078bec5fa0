// Whole streets for the street-name labels. The road network arrives cut into short segments
// (30 m by default), too short to carry a name along them below street level; a label needs
// the street as one line. Segments of a road (same road_ref) are chained end to start.

const key = (point) => `${point[0]},${point[1]}`;

/** One LineString feature per chain of touching segments of each named road in ``rows`` (the
 * segment listing's items), with the road's ``name``. */
export function streetLines(rows) {
  const roads = new Map();
  for (const row of rows) {
    if (!row.name) continue;
    const group = `${row.road_ref}\u0000${row.name}`;
    if (!roads.has(group)) roads.set(group, []);
    roads.get(group).push(row);
  }
  const features = [];
  for (const segments of roads.values()) {
    for (const coordinates of chains(segments.map((s) => s.geometry.coordinates))) {
      features.push({
        type: 'Feature',
        geometry: { type: 'LineString', coordinates },
        properties: { name: segments[0].name },
      });
    }
  }
  return { type: 'FeatureCollection', features };
}

/** The lines (coordinate arrays) joined wherever one ends where another starts. */
export function chains(lines) {
  const byStart = new Map();
  const ends = new Set();
  for (const line of lines) {
    byStart.set(key(line[0]), line);
    ends.add(key(line[line.length - 1]));
  }
  const used = new Set();
  const out = [];
  const walk = (first) => {
    const coords = [...first];
    used.add(first);
    for (;;) {
      const next = byStart.get(key(coords[coords.length - 1]));
      if (!next || used.has(next)) break;
      used.add(next);
      coords.push(...next.slice(1));
    }
    out.push(coords);
  };
  // Start where no segment leads in, then whatever is left (a ring road).
  for (const line of lines) if (!used.has(line) && !ends.has(key(line[0]))) walk(line);
  for (const line of lines) if (!used.has(line)) walk(line);
  return out;
}
