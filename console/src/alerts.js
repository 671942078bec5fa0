// The alert list's logic, apart from the page so it can be tested on its own: which alerts a
// filter keeps, their order, how one server-sent event changes the list, and an alert's
// timeline.

export const SEVERITY_RANK = { critical: 3, warning: 2, info: 1 };
export const STATUSES = ['open', 'acknowledged', 'resolved'];
export const SEVERITIES = ['critical', 'warning', 'info'];
export const KINDS = ['walkthrough', 'remote_sensing', 'emergency'];

/** Most severe first, then newest (highest id) first: the API's ``order=severity``, so a live
 * alert lands where a reload would put it. */
export function compareAlerts(a, b) {
  const bySeverity = (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0);
  return bySeverity !== 0 ? bySeverity : b.id - a.id;
}

export function sortAlerts(alerts) {
  return [...alerts].sort(compareAlerts);
}

/** The query parameters of ``GET /api/v1/alerts`` for ``filter``; ``unresolved`` is the two
 * statuses before resolution. */
export function alertQuery(filter, limit = 200) {
  const params = new URLSearchParams({ order: 'severity', limit: String(limit) });
  for (const key of ['kind', 'pollutant', 'rule']) {
    if (filter[key]) params.set(key, filter[key]);
  }
  if (filter.severity) params.append('severity', filter.severity);
  for (const status of statusesOf(filter.status)) params.append('status', status);
  return params;
}

function statusesOf(status) {
  if (!status) return [];
  return status === 'unresolved' ? ['open', 'acknowledged'] : [status];
}

/** Whether ``alert`` passes ``filter`` (the same rules as the API's filters: ``rule`` matches
 * the alert's rule or any rule that fired). */
export function matchesFilter(alert, filter) {
  if (filter.kind && alert.kind !== filter.kind) return false;
  if (filter.pollutant && alert.pollutant !== filter.pollutant) return false;
  if (filter.rule && alert.rule !== filter.rule && !(alert.rules || []).includes(filter.rule)) {
    return false;
  }
  if (filter.severity && alert.severity !== filter.severity) return false;
  const statuses = statusesOf(filter.status);
  if (statuses.length && !statuses.includes(alert.status)) return false;
  return true;
}

/** One ``alert`` event of the stream applied to ``alerts`` (a Map of id → alert, not changed):
 * the new Map with the alert's status and severity as the event says, and the id to fetch
 * again for everything else the event does not carry (street, values, notes). An event older
 * than what the list already shows (its alert updated since) changes nothing but is fetched
 * all the same, which is harmless. */
export function applyAlertEvent(alerts, event) {
  const next = new Map(alerts);
  const known = next.get(event.alert_id);
  if (known) {
    next.set(event.alert_id, { ...known, status: event.status, severity: event.severity });
  }
  return { alerts: next, refetch: event.alert_id };
}

/** Many events at once (a reconnect replays what was missed): the ids to fetch, each once. */
export function alertsToRefetch(events) {
  return [...new Set(events.map((e) => e.alert_id))];
}

/** The alert's history as the page shows it, oldest first: each ``{at, key, params}`` is a
 * translation key and its parameters. Built from the alert's own fields, which record every
 * transition's time and author. */
export function alertTimeline(alert) {
  const entries = [
    { at: alert.first_seen, key: 'ev_first_seen', params: {} },
    { at: alert.created_at, key: 'ev_opened', params: {} },
  ];
  if (alert.last_seen && alert.last_seen !== alert.first_seen) {
    entries.push({ at: alert.last_seen, key: 'ev_last_seen', params: {} });
  }
  if (alert.confirmed_at) entries.push({ at: alert.confirmed_at, key: 'ev_confirmed', params: {} });
  if (alert.stale_since) entries.push({ at: alert.stale_since, key: 'ev_stale', params: {} });
  if (alert.acknowledged_at) {
    entries.push({
      at: alert.acknowledged_at,
      key: 'ev_acknowledged',
      params: { by: alert.acknowledged_by || '?' },
      note: alert.ack_note,
    });
  }
  if (alert.resolved_at) {
    entries.push(
      alert.resolved_by
        ? { at: alert.resolved_at, key: 'ev_resolved', params: { by: alert.resolved_by }, note: alert.resolve_note }
        : { at: alert.resolved_at, key: 'ev_resolved_auto', params: { resolution: alert.resolution || '' } },
    );
  }
  return entries.filter((e) => e.at).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

/** The alert's passes: ``flagged`` (each occurrence of a walk-through alert is one drive pass
 * over the limit) and ``clean`` (later passes recorded by verification). */
export function alertPasses(alert) {
  const clean = ((alert.verification || {}).passes || []).length;
  return { flagged: alert.occurrences, clean };
}
