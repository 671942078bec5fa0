import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VehicleIndex, fromVehicleRow, throttle } from '../src/live.js';

test('a vehicle keeps its latest position; a late one never moves it back', () => {
  const index = new VehicleIndex();
  assert.ok(index.update({ vehicle_id: 'a', kind: 'walkthrough', lat: 1, lon: 2, ts: '2026-05-01T08:00:02Z' }));
  assert.ok(!index.update({ vehicle_id: 'a', kind: 'walkthrough', lat: 9, lon: 9, ts: '2026-05-01T08:00:01Z' }));
  assert.ok(index.update(fromVehicleRow({ vehicle_id: 'b', kind: 'emergency', last_lat: 3, last_lon: 4, last_ts: '2026-05-01T08:00:00Z' })));
  const collection = index.collection();
  assert.equal(index.dirty, false);
  assert.deepEqual(
    collection.features.map((f) => [f.properties.vehicle_id, f.properties.kind, f.geometry.coordinates]),
    [['a', 'walkthrough', [2, 1]], ['b', 'emergency', [4, 3]]],
  );
});

test('throttle flushes at once, then at most once per interval, keeping the last poke', () => {
  let clock = 0;
  const timers = [];
  let flushes = 0;
  const poke = throttle(() => { flushes += 1; }, 1000, { now: () => clock, schedule: (fn, ms) => timers.push([clock + ms, fn]) });
  poke();
  assert.equal(flushes, 1);
  clock = 100;
  poke();
  poke();
  poke();
  assert.equal(flushes, 1);
  assert.equal(timers.length, 1, 'one trailing flush, however many pokes');
  clock = timers[0][0];
  timers.shift()[1]();
  assert.equal(flushes, 2);
  clock += 1500;
  poke();
  assert.equal(flushes, 3);
});

test('a batch of positions counts the vehicles it moved', () => {
  const index = new VehicleIndex();
  const at = (s) => `2026-05-01T08:00:0${s}Z`;
  assert.equal(index.updateMany([{ vehicle_id: 'a', ts: at(2) }, { vehicle_id: 'b', ts: at(2) }]), 2);
  assert.equal(index.updateMany([{ vehicle_id: 'a', ts: at(1) }, { vehicle_id: 'b', ts: at(3) }]), 1);
  assert.equal(index.size, 2);
});
