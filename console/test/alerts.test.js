import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  alertPasses,
  alertQuery,
  alertTimeline,
  alertsToRefetch,
  applyAlertEvent,
  matchesFilter,
  sortAlerts,
} from '../src/alerts.js';

const alert = (id, severity, more = {}) => ({ id, severity, status: 'open', kind: 'walkthrough', pollutant: 'pm25', rule: 'pass_screening', rules: ['reference_ratio'], ...more });

test('most severe first, newest first within a severity', () => {
  const sorted = sortAlerts([alert(1, 'info'), alert(2, 'critical'), alert(3, 'warning'), alert(4, 'critical'), alert(5, 'info')]);
  assert.deepEqual(sorted.map((a) => a.id), [4, 2, 3, 5, 1]);
});

test('the filter matches the rule or any rule that fired, and unresolved means open or acknowledged', () => {
  const a = alert(1, 'warning');
  assert.ok(matchesFilter(a, { rule: 'reference_ratio' }));
  assert.ok(matchesFilter(a, { rule: 'pass_screening', kind: 'walkthrough', pollutant: 'pm25' }));
  assert.ok(!matchesFilter(a, { rule: 'hotspot' }));
  assert.ok(!matchesFilter(a, { severity: 'critical' }));
  assert.ok(matchesFilter(a, { status: 'unresolved' }));
  assert.ok(matchesFilter({ ...a, status: 'acknowledged' }, { status: 'unresolved' }));
  assert.ok(!matchesFilter({ ...a, status: 'resolved' }, { status: 'unresolved' }));
  assert.ok(matchesFilter({ ...a, status: 'resolved' }, { status: '' }));
});

test('the query asks the API for the same filter, most severe first', () => {
  const q = alertQuery({ kind: 'emergency', pollutant: '', rule: 'hotspot', severity: 'critical', status: 'unresolved' });
  assert.equal(q.get('order'), 'severity');
  assert.equal(q.get('kind'), 'emergency');
  assert.equal(q.get('pollutant'), null);
  assert.deepEqual(q.getAll('status'), ['open', 'acknowledged']);
  assert.deepEqual(q.getAll('severity'), ['critical']);
});

test('an event updates a known alert at once and asks for it to be fetched again', () => {
  const before = new Map([[7, alert(7, 'warning', { street: 'Ring Road' })]]);
  const { alerts, refetch } = applyAlertEvent(before, { id: 99, alert_id: 7, type: 'escalated', status: 'open', severity: 'critical' });
  assert.equal(refetch, 7);
  assert.equal(alerts.get(7).severity, 'critical');
  assert.equal(alerts.get(7).street, 'Ring Road');
  assert.equal(before.get(7).severity, 'warning', 'the old map is not changed');
});

test('an event about an unknown alert adds nothing until it is fetched', () => {
  const { alerts, refetch } = applyAlertEvent(new Map(), { id: 1, alert_id: 12, type: 'opened', status: 'open', severity: 'info' });
  assert.equal(alerts.size, 0);
  assert.equal(refetch, 12);
});

test('a replay after reconnecting fetches each alert once', () => {
  assert.deepEqual(alertsToRefetch([{ alert_id: 3 }, { alert_id: 5 }, { alert_id: 3 }]), [3, 5]);
});

test('the timeline orders the recorded transitions and names who acted', () => {
  const timeline = alertTimeline({
    first_seen: '2026-05-01T08:00:00Z',
    last_seen: '2026-05-01T08:00:06Z',
    created_at: '2026-05-01T08:00:09Z',
    confirmed_at: null,
    stale_since: null,
    acknowledged_at: '2026-05-01T08:05:00Z',
    acknowledged_by: 'duty-officer',
    ack_note: 'crew sent',
    resolved_at: '2026-05-01T09:00:00Z',
    resolved_by: 'verification',
    resolve_note: 'clean passes',
  });
  assert.deepEqual(timeline.map((e) => e.key), ['ev_first_seen', 'ev_last_seen', 'ev_opened', 'ev_acknowledged', 'ev_resolved']);
  assert.deepEqual(timeline[3].params, { by: 'duty-officer' });
  assert.equal(timeline[3].note, 'crew sent');
});

test('passes count the flagged ones and the clean ones verification recorded', () => {
  assert.deepEqual(alertPasses({ occurrences: 2, verification: {} }), { flagged: 2, clean: 0 });
  assert.deepEqual(alertPasses({ occurrences: 1, verification: { passes: [{}, {}, {}] } }), { flagged: 1, clean: 3 });
});
