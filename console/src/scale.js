// The colour scale of the road segments: a segment's recent mean divided by the current
// walk-through limit of the pollutant (C/S, 占标率, as the alerts compute it), in classes.
//
// The limit comes from GET /api/v1/thresholds, so a revised standard changes the map without a
// new build. Ratio 1 is the Grade II limit of GB 3095, which HJ 633 makes IAQI 100; the colours
// are the HJ 633 AQI level colours (docs/domain.md §2.4), and the 1.5 and 3 bounds are the
// service's warning and critical ratios (§2.3), so a red street is one that would alert.

/** Upper bounds (exclusive) of the classes; the last class is open-ended. */
export const RATIO_CLASSES = [
  { upTo: 0.5, colour: '#00E400', label: '< 0.5' },
  { upTo: 1.0, colour: '#FFFF00', label: '0.5 – 1' },
  { upTo: 1.5, colour: '#FF7E00', label: '1 – 1.5' },
  { upTo: 3.0, colour: '#FF0000', label: '1.5 – 3' },
  { upTo: Infinity, colour: '#99004C', label: '≥ 3' },
];
/** Segments without readings in the window. */
export const NO_DATA_COLOUR = '#8a94a6';

/** The class index of ``ratio``, or -1 when there is no ratio (no readings, or no limit). */
export function ratioClass(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio) || ratio < 0) return -1;
  return RATIO_CLASSES.findIndex((c) => ratio < c.upTo);
}

export function ratioColour(ratio) {
  const index = ratioClass(ratio);
  return index < 0 ? NO_DATA_COLOUR : RATIO_CLASSES[index].colour;
}

/** The MapLibre expression colouring a feature by ``input``, by default its ``ratio`` property
 * (-1 when none), so that each feature carries one number rather than a colour. */
export function ratioColourExpression(input = ['get', 'ratio']) {
  const steps = ['step', input, NO_DATA_COLOUR, 0, RATIO_CLASSES[0].colour];
  for (let i = 1; i < RATIO_CLASSES.length; i += 1) {
    steps.push(RATIO_CLASSES[i - 1].upTo, RATIO_CLASSES[i].colour);
  }
  return steps;
}

/** The threshold row in force on ``day`` (YYYY-MM-DD) for a walk-through ``pollutant``: of the
 * rows whose period holds the day, the lowest limit (the reference one). Null when none. */
export function currentLimit(thresholds, pollutant, day) {
  const rows = (thresholds || []).filter(
    (t) =>
      t.kind === 'walkthrough' &&
      t.pollutant === pollutant &&
      t.effective_from <= day &&
      (t.effective_to === null || t.effective_to === undefined || day < t.effective_to),
  );
  rows.sort((a, b) => a.limit_value - b.limit_value);
  return rows[0] || null;
}

/** Units as the thresholds spell them and as people read them. */
export function displayUnit(unit) {
  return { 'ug/m3': 'µg/m³', 'mg/m3': 'mg/m³' }[unit] || unit;
}

/** The segment listing's ``mean`` as a ratio of ``limit`` (null without one). The mean is in
 * the pollutant's reading unit, which is the threshold's unit for every seeded pollutant. */
export function segmentRatio(mean, limit) {
  if (mean === null || mean === undefined || !limit || !(limit.limit_value > 0)) return null;
  return mean / limit.limit_value;
}

/** The legend's rows: one per class plus "no data", each with its colour and its value range
 * in the limit's unit, so the officer reads concentrations as well as ratios. */
export function legendRows(limit) {
  const rows = [];
  let from = 0;
  for (const c of RATIO_CLASSES) {
    const value =
      limit && limit.limit_value > 0
        ? c.upTo === Infinity
          ? `≥ ${round(from * limit.limit_value)}`
          : `${round(from * limit.limit_value)} – ${round(c.upTo * limit.limit_value)}`
        : null;
    rows.push({ colour: c.colour, ratio: c.label, value });
    from = c.upTo;
  }
  rows.push({ colour: NO_DATA_COLOUR, ratio: null, value: null });
  return rows;
}

function round(x) {
  return Number.isInteger(x) ? String(x) : x.toFixed(x < 10 ? 1 : 0);
}
