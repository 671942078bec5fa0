import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chains, streetLines } from '../src/streets.js';

test('touching segments join into one line, in order, whatever order they come in', () => {
  const lines = [[[2, 0], [3, 0]], [[0, 0], [1, 0]], [[1, 0], [2, 0]]];
  assert.deepEqual(chains(lines), [[[0, 0], [1, 0], [2, 0], [3, 0]]]);
});

test('a gap makes two lines, and a ring road is one line', () => {
  assert.equal(chains([[[0, 0], [1, 0]], [[5, 0], [6, 0]]]).length, 2);
  const ring = chains([[[0, 0], [1, 0]], [[1, 0], [1, 1]], [[1, 1], [0, 0]]]);
  assert.equal(ring.length, 1);
  assert.equal(ring[0].length, 4);
});

test('one labelled line per named road; unnamed segments are left out', () => {
  const row = (id, ref, name, coordinates) => ({ id, road_ref: ref, name, geometry: { type: 'LineString', coordinates } });
  const streets = streetLines([
    row(1, 'a', '知行路', [[0, 0], [1, 0]]),
    row(2, 'a', '知行路', [[1, 0], [2, 0]]),
    row(3, 'b', 'Ring Road', [[0, 1], [1, 1]]),
    row(4, 'c', null, [[0, 2], [1, 2]]),
  ]);
  assert.deepEqual(
    streets.features.map((f) => [f.properties.name, f.geometry.coordinates.length]),
    [['知行路', 3], ['Ring Road', 2]],
  );
});
