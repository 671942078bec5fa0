import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  NO_DATA_COLOUR,
  RATIO_CLASSES,
  currentLimit,
  legendRows,
  ratioClass,
  ratioColour,
  ratioColourExpression,
  segmentRatio,
} from '../src/scale.js';

const THRESHOLDS = [
  { kind: 'walkthrough', pollutant: 'pm25', limit_value: 75, unit: 'ug/m3', effective_from: '2012-02-29', effective_to: '2026-03-01' },
  { kind: 'walkthrough', pollutant: 'pm25', limit_value: 60, unit: 'ug/m3', effective_from: '2026-03-01', effective_to: '2031-01-01' },
  { kind: 'walkthrough', pollutant: 'pm25', limit_value: 90, unit: 'ug/m3', effective_from: '2026-03-01', effective_to: null },
  { kind: 'emergency', pollutant: 'pm25', limit_value: 1, unit: 'ug/m3', effective_from: '2000-01-01', effective_to: null },
];

test('classes break at 0.5, 1, 1.5 and 3 times the limit, bounds going to the upper class', () => {
  assert.deepEqual([0, 0.49, 0.5, 0.99, 1, 1.49, 1.5, 2.99, 3, 50].map(ratioClass), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
});

test('no ratio is no data, never green', () => {
  for (const none of [null, undefined, Number.NaN, -1]) {
    assert.equal(ratioClass(none), -1);
    assert.equal(ratioColour(none), NO_DATA_COLOUR);
  }
  assert.equal(segmentRatio(null, THRESHOLDS[1]), null);
  assert.equal(segmentRatio(30, null), null);
  assert.equal(segmentRatio(30, THRESHOLDS[1]), 0.5);
});

test('the map expression colours as ratioColour does', () => {
  const expression = ratioColourExpression();
  // ['step', input, below-first, stop0, out0, stop1, out1, ...]
  const evaluate = (x) => {
    let out = expression[2];
    for (let i = 3; i < expression.length; i += 2) if (x >= expression[i]) out = expression[i + 1];
    return out;
  };
  for (const x of [-1, 0, 0.3, 0.5, 1, 1.2, 1.5, 2, 3, 10]) {
    assert.equal(evaluate(x), x < 0 ? NO_DATA_COLOUR : ratioColour(x), `ratio ${x}`);
  }
});

test('the limit in force is the lowest walk-through row whose period holds the day', () => {
  assert.equal(currentLimit(THRESHOLDS, 'pm25', '2025-06-01').limit_value, 75);
  assert.equal(currentLimit(THRESHOLDS, 'pm25', '2026-03-01').limit_value, 60);
  assert.equal(currentLimit(THRESHOLDS, 'pm25', '2031-01-01').limit_value, 90);
  assert.equal(currentLimit(THRESHOLDS, 'no2', '2026-06-01'), null);
});

test('legend rows give each class its concentration range in the limit unit, then no data', () => {
  const rows = legendRows({ limit_value: 60 });
  assert.equal(rows.length, RATIO_CLASSES.length + 1);
  assert.deepEqual(rows.map((r) => r.value), ['0 – 30', '30 – 60', '60 – 90', '90 – 180', '≥ 180', null]);
  assert.equal(rows.at(-1).colour, NO_DATA_COLOUR);
  assert.deepEqual(legendRows({ limit_value: 4 }).map((r) => r.value).slice(0, 2), ['0 – 2', '2 – 4']);
  assert.ok(legendRows(null).every((r) => r.value === null));
});
