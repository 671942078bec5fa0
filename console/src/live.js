// Live vehicle positions: many small updates folded into one GeoJSON collection that the map
// takes at most about once a second (a setData per position would re-tile 2,000 times a second).

/** The vehicles' latest positions, by id. ``update`` keeps a position only if it is not older
 * than the one held, so a late event never moves a vehicle back. */
export class VehicleIndex {
  constructor() {
    this.byId = new Map();
    this.dirty = false;
  }

  /** One position ``{vehicle_id, kind, lat, lon, ts}`` (an event of the stream, or a row of
   * ``GET /vehicles`` turned into one by ``fromVehicleRow``). */
  update(position) {
    const held = this.byId.get(position.vehicle_id);
    if (held && Date.parse(held.ts) > Date.parse(position.ts)) return false;
    this.byId.set(position.vehicle_id, position);
    this.dirty = true;
    return true;
  }

  /** A batch of positions (one ``positions`` event); how many moved a vehicle. */
  updateMany(positions) {
    let moved = 0;
    for (const p of positions) if (this.update(p)) moved += 1;
    return moved;
  }

  get size() {
    return this.byId.size;
  }

  /** The GeoJSON collection of every vehicle, and the index marked clean. */
  collection() {
    this.dirty = false;
    const features = [];
    for (const p of this.byId.values()) {
      features.push({
        type: 'Feature',
        geometry: { type: 'Point', coordinates: [p.lon, p.lat] },
        properties: { vehicle_id: p.vehicle_id, kind: p.kind, ts: p.ts },
      });
    }
    return { type: 'FeatureCollection', features };
  }
}

export function fromVehicleRow(row) {
  return { vehicle_id: row.vehicle_id, kind: row.kind, lat: row.last_lat, lon: row.last_lon, ts: row.last_ts };
}

/** Calls ``flush`` at most once per ``interval_ms`` while ``poke`` is called; the last poke
 * within an interval is never lost (a trailing call runs at the interval's end). */
export function throttle(flush, intervalMs, { now = () => Date.now(), schedule = setTimeout } = {}) {
  let last = -Infinity;
  let pending = false;
  return function poke() {
    if (pending) return;
    const wait = last + intervalMs - now();
    if (wait <= 0) {
      last = now();
      flush();
      return;
    }
    pending = true;
    schedule(() => {
      pending = false;
      last = now();
      flush();
    }, wait);
  };
}
