import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyStats, networkRows, statItems } from '../src/network.js';

const network = {
  version: '2-9-0',
  count: 2,
  ids: [4, 9],
  names: ['知行路', null],
  road_refs: ['a', 'b'],
  points: [2, 3],
  coordinates: [116, 39, 116.1, 39, 116.2, 39, 116.3, 39.1, 116.4, 39.2],
};

test('the columns become one row per segment, in order, each with its own positions', () => {
  const rows = networkRows(network);
  assert.deepEqual(rows[0], {
    id: 4, name: '知行路', road_ref: 'a', geometry: { type: 'LineString', coordinates: [[116, 39], [116.1, 39]] }, mean: null, readings: 0,
  });
  assert.deepEqual(rows[1].geometry.coordinates, [[116.2, 39], [116.3, 39.1], [116.4, 39.2]]);
  assert.deepEqual(rows.map((r) => [r.id, r.name, r.road_ref]), [[4, '知行路', 'a'], [9, null, 'b']]);
  assert.deepEqual(networkRows({ ids: [], names: [], road_refs: [], points: [], coordinates: [] }), []);
});

test('statistics land on their segments; the others are cleared; unknown ids are skipped', () => {
  const rows = networkRows(network);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const recent = { ids: [9], readings: [3], means: [80], maxes: [95] };
  assert.deepEqual(statItems(recent), [{ id: 9, mean: 80, readings: 3 }]);
  applyStats(rows, byId, statItems(recent));
  assert.deepEqual(rows.map((r) => [r.mean, r.readings]), [[null, 0], [80, 3]]);
  applyStats(rows, byId, [{ id: 4, mean: 12.5, readings: 1 }, { id: 77, mean: 1, readings: 1 }]);
  assert.deepEqual(rows.map((r) => [r.mean, r.readings]), [[12.5, 1], [null, 0]]);
});
