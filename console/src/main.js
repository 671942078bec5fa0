// The duty officer's console: logs in, draws the city's roads coloured by a pollutant's recent
// level, the vehicles, alerts, remote-sensing high emitters and emergency incidents, and keeps
// the alert list live from the server-sent-event stream.

import * as api from './api.js';
import {
  KINDS,
  SEVERITIES,
  alertPasses,
  alertQuery,
  alertTimeline,
  applyAlertEvent,
  matchesFilter,
  sortAlerts,
} from './alerts.js';
import { LANGUAGES, chooseLanguage, ruleName, translate } from './i18n.js';
import { VehicleIndex, fromVehicleRow, throttle } from './live.js';
import { boundsOf, createMap, setData, showPopup } from './map.js';
import { applyStats, networkRows, statItems } from './network.js';
import { currentLimit, displayUnit, legendRows, segmentRatio } from './scale.js';
import { streetLines } from './streets.js';

const POLLUTANTS = ['pm25', 'pm10', 'no2', 'o3', 'so2', 'co', 'tvoc'];
const POLLUTANT_NAMES = { pm25: 'PM2.5', pm10: 'PM10', no2: 'NO₂', o3: 'O₃', so2: 'SO₂', co: 'CO', tvoc: 'TVOC' };
const RULES = ['pass_screening', 'reference_ratio', 'fixed_point_trigger', 'hotspot', 'high_emitter'];
const SEGMENT_WINDOW_MIN = 60;
const SEGMENT_PAGE = 5000;
const VEHICLE_POLL_MS = 5000;
const SEGMENT_REFRESH_MS = 60000;
const STREAM_RETRY_MS = 5000;
const LANGUAGE_KEY = 'telemetry.language';

const config = JSON.parse(document.getElementById('console-config')?.textContent || '{}');

const state = {
  lang: chooseLanguage(navigator.languages, localStorage.getItem(LANGUAGE_KEY)),
  me: null,
  map: null,
  pollutant: 'pm25',
  thresholds: [],
  segments: [], // the network's rows (networkRows) with their statistics, kept to recolour in place
  segmentById: new Map(),
  segmentMid: new Map(), // segment id → [lon, lat]
  alerts: new Map(),
  notes: new Map(), // alert id → the note being typed
  openTimelines: new Set(),
  filter: { kind: '', pollutant: '', rule: '', severity: '', status: 'unresolved' },
  vehicles: new VehicleIndex(),
  positionsLive: false,
  emitters: [],
  incidents: [],
  incidentCollection: { type: 'FeatureCollection', features: [] },
  stream: null,
  timers: [],
  vehicleFlushes: 0,
  vehicleFlushMs: [], // main-thread time of each vehicle layer update: read by the benchmark
  timing: {}, // performance.now() at login, data loaded and drawn: read by the benchmark
};

const t = (key, params) => translate(state.lang, key, params);

/** A DOM element: ``h('div', {class: 'x'}, child, 'text')``. Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const $ = (id) => document.getElementById(id);

function number(x, digits = 1) {
  if (x === null || x === undefined) return '–';
  return Number(x).toLocaleString(state.lang === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: digits });
}

function time(iso) {
  return new Date(iso).toLocaleString(state.lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

// --- messages ---------------------------------------------------------------------------------

function showError(error) {
  let text;
  if (error instanceof api.ApiError && error.status === 401) {
    text = t('sessionExpired');
    loggedOut();
  } else if (error instanceof api.ApiError && error.status === 403) {
    text = t('forbidden', { role: state.me?.role ?? '?', detail: error.detail });
  } else {
    text = t('requestFailed', { detail: error.detail || error.message });
  }
  const box = $('message');
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $('message').hidden = true;
}

// --- language ---------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  $('language').value = state.lang;
  fillFilters();
  if (state.me) {
    $('who').textContent = t('loggedInAs', state.me);
    renderLegend();
    renderAlerts();
    renderEmitters();
    renderIncidents();
    renderCounts();
    if (state.stream) setLive(state.live);
  }
}

function setLanguage(lang) {
  state.lang = lang;
  localStorage.setItem(LANGUAGE_KEY, lang);
  applyLanguage();
}

// --- login ------------------------------------------------------------------------------------

async function onLogin(event) {
  event.preventDefault();
  const form = event.target;
  const error = $('login-error');
  error.hidden = true;
  state.timing = { login: performance.now() };
  try {
    await api.logIn(form.username.value, form.password.value);
    form.password.value = '';
    await start();
  } catch (e) {
    error.textContent = t('loginFailed', { detail: e.detail || e.message });
    error.hidden = false;
  }
}

async function onLogout() {
  await api.logOut();
  loggedOut();
}

function loggedOut() {
  stopLive();
  state.me = null;
  $('console').hidden = true;
  $('login').hidden = false;
  $('session').hidden = true;
}

// --- start ------------------------------------------------------------------------------------

async function start() {
  try {
    state.me = await api.request('/api/v1/auth/me');
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) {
      loggedOut();
      return;
    }
    throw e;
  }
  $('login').hidden = true;
  $('session').hidden = false;
  $('console').hidden = false;
  $('who').textContent = t('loggedInAs', state.me);
  if (!state.map) {
    state.map = await createMap($('map'), {
      basemapUrl: config.basemap_url || '',
      workerUrl: config.worker_url,
    });
    wireMap(state.map);
    // For the browser tests and the benchmark, and for a curious officer's devtools.
    window.telemetryConsole = state;
  }
  state.map.resize();
  const loads = [loadThresholds().then(loadSegments), loadAlerts(), loadVehicles(), loadEmitters(), loadIncidents()];
  startLive();
  await Promise.allSettled(loads).then((results) => {
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) showError(failed.reason);
  });
  state.timing.ready = performance.now();
  // The roads and the incidents' cells (not their downwind axes, drawn to the outermost ring).
  const cells = state.incidentCollection.features.filter((f) => f.properties.feature !== 'downwind_axis');
  fitTo([{ features: state.segments.map((s) => ({ geometry: s.geometry })) }, { features: cells }]);
  document.body.dataset.ready = 'true';
  // Drawn: the first frame rendered with the whole road network's tiles in place (vehicles
  // moving meanwhile keep the map from ever being idle, so 'idle' would not say it).
  await new Promise((resolve) => {
    const check = () => {
      if (!state.map.isSourceLoaded('segments')) return;
      state.map.off('render', check);
      resolve();
    };
    state.map.on('render', check);
    state.map.triggerRepaint();
  });
  state.timing.rendered = performance.now();
  document.body.dataset.rendered = 'true';
}

// --- segments and legend ----------------------------------------------------------------------

async function loadThresholds() {
  state.thresholds = await api.request('/api/v1/thresholds', { params: new URLSearchParams({ kind: 'walkthrough' }) });
}

function limitNow() {
  const today = new Date().toISOString().slice(0, 10);
  return currentLimit(state.thresholds, state.pollutant, today);
}

function segmentFeatures(rows, limit) {
  return rows.map((s) => {
    const ratio = segmentRatio(s.mean, limit);
    return {
      type: 'Feature',
      id: s.id,
      geometry: s.geometry,
      properties: { id: s.id, name: s.name ?? '', ratio: ratio ?? -1 },
    };
  });
}

function drawSegments() {
  const collection = { type: 'FeatureCollection', features: segmentFeatures(state.segments, limitNow()) };
  setData(state.map, 'segments', collection);
  return collection;
}

/** The road network, drawn once with its recent statistics: the lines from the geometry
 * listing (one request, cached by the browser until the roads are imported again, and kept
 * here when only the pollutant changes) and the statistics of just the segments that have
 * readings in the window (one small request, whatever the network's size). */
async function loadSegments({ fit = true, reloadNetwork = true } = {}) {
  const network = reloadNetwork || !state.segments.length ? api.request('/api/v1/segments/geometry') : null;
  const [columns, recent] = await Promise.all([network, recentStats()]);
  if (columns) {
    state.segments = networkRows(columns);
    state.segmentById = new Map(state.segments.map((s) => [s.id, s]));
    state.segmentMid = new Map(state.segments.map((s) => [s.id, midpoint(s.geometry.coordinates)]));
  }
  applyStats(state.segments, state.segmentById, statItems(recent));
  const collection = drawSegments();
  state.timing.firstSegments ??= performance.now();
  if (fit) fitTo([collection]);
  if (columns) setData(state.map, 'streets', streetLines(state.segments));
  renderCounts();
  renderLegend();
  drawEmitters();
  document.body.dataset.segments = String(state.segments.length);
}

/** The chosen pollutant's statistics of the segments with readings in the window, by columns. */
function recentStats() {
  const params = new URLSearchParams({ pollutant: state.pollutant, minutes: String(SEGMENT_WINDOW_MIN) });
  return api.request('/api/v1/segments/recent', { params });
}

/** ``rows`` of the segment listing applied to the segments already drawn, as feature state:
 * the map recolours them without re-tiling the network. */
function recolour(rows) {
  const limit = limitNow();
  for (const row of rows) {
    const held = state.segmentById.get(row.id);
    if (!held) continue;
    held.mean = row.mean;
    held.readings = row.readings;
    state.map.setFeatureState({ source: 'segments', id: row.id }, { ratio: segmentRatio(row.mean, limit) ?? -1 });
  }
}

/** New statistics for the segments near ``point`` (a new alert's). */
async function recolourAround(point) {
  const d = 0.01;
  const bbox = [point.lon - d, point.lat - d, point.lon + d, point.lat + d].map((x) => x.toFixed(5)).join(',');
  const params = { pollutant: state.pollutant, minutes: String(SEGMENT_WINDOW_MIN), limit: String(SEGMENT_PAGE), bbox };
  await api.allPages('/api/v1/segments', params, recolour);
}

/** The periodic refresh: only the segments with readings in the window are fetched (one
 * small answer, whatever the network's size); those that had readings and have none now turn
 * grey. */
async function refreshStats() {
  const items = statItems(await recentStats());
  const fresh = new Set(items.map((row) => row.id));
  recolour(items);
  recolour(
    state.segments.filter((s) => s.readings > 0 && !fresh.has(s.id)).map((s) => ({ id: s.id, mean: null, readings: 0 })),
  );
}

/** Shows the whole of ``collections`` (GeoJSON), clear of the legend floating over the map's
 * left side. */
function fitTo(collections) {
  const corners = collections.map(boundsOf).filter((b) => b).flat();
  if (!corners.length) return;
  const bounds = boundsOf({ features: [{ geometry: { coordinates: corners } }] });
  const left = $('map-panel').offsetWidth + 30;
  state.map.fitBounds(bounds, { padding: { top: 30, bottom: 30, right: 60, left }, duration: 0 });
}

function midpoint(coords) {
  return coords[Math.floor((coords.length - 1) / 2)];
}

function renderLegend() {
  const limit = limitNow();
  const name = POLLUTANT_NAMES[state.pollutant];
  const box = $('legend');
  box.replaceChildren(
    h('div', { class: 'legend-title' }, t('legendTitle', { pollutant: name })),
    limit
      ? h('div', { class: 'legend-source' }, t('legendLimit', {
          limit: number(limit.limit_value, 2),
          unit: displayUnit(limit.unit),
          averaging: limit.averaging,
          source: limit.source,
        }))
      : h('div', { class: 'legend-source' }, t('legendNoLimit')),
    h(
      'table',
      {},
      legendRows(limit).map((row) =>
        h(
          'tr',
          {},
          h('td', {}, h('span', { class: 'swatch', style: `background:${row.colour}` })),
          h('td', {}, row.ratio ?? t('legendNoData', { minutes: SEGMENT_WINDOW_MIN })),
          h('td', { class: 'legend-value' }, row.value ? `${row.value} ${displayUnit(limit.unit)}` : ''),
        ),
      ),
    ),
    limit ? h('div', { class: 'legend-note' }, t('legendNote', { averaging: limit.averaging })) : null,
    h(
      'div',
      { class: 'legend-kinds' },
      KINDS.map((kind) => h('span', { class: `dot kind-${kind}` }, t(`kind_${kind}`))),
      h('span', { class: 'dot emitter' }, t('highEmitters')),
    ),
    h(
      'div',
      { class: 'legend-kinds' },
      `${t('tierLegend')}:`,
      SEVERITIES.map((s) => h('span', { class: `cell severity-${s}` }, t(`severity_${s}`))),
      h('span', { class: 'axis' }, t('downwindAxis')),
    ),
  );
}

function renderCounts() {
  $('counts').textContent = `${t('segmentsLoaded', { count: state.segments.length })} · ${t('vehiclesLive', { count: state.vehicles.size })}`;
}

// --- alerts -----------------------------------------------------------------------------------

async function loadAlerts() {
  const page = await api.request('/api/v1/alerts', { params: alertQuery(state.filter) });
  state.alerts = new Map(page.items.map((a) => [a.id, a]));
  renderAlerts();
}

function visibleAlerts() {
  return sortAlerts([...state.alerts.values()].filter((a) => matchesFilter(a, state.filter)));
}

function drawAlerts(alerts) {
  const features = alerts
    .filter((a) => a.point)
    .map((a) => ({
      type: 'Feature',
      id: a.id,
      geometry: { type: 'Point', coordinates: [a.point.lon, a.point.lat] },
      properties: { id: a.id, severity: a.severity, status: a.status },
    }));
  // Emergency alerts are drawn by their incident (its source point and assessment).
  if (state.map) setData(state.map, 'alerts', { type: 'FeatureCollection', features });
}

/** The list drawn again (after every event): notes being typed, the focus and open timelines
 * are kept, so that a busy stream does not take an officer's note away mid-sentence. */
function renderAlerts() {
  const alerts = visibleAlerts();
  drawAlerts(alerts);
  const list = $('alert-list');
  const active = document.activeElement;
  const focused = list.contains(active) && active.name === 'note' ? active.closest('li.alert').dataset.alertId : null;
  list.replaceChildren(...(alerts.length ? alerts.map(alertCard) : [h('li', { class: 'empty' }, t('noAlerts'))]));
  $('alert-count').textContent = String(alerts.length);
  if (focused !== null) {
    const input = list.querySelector(`li.alert[data-alert-id="${focused}"] input[name=note]`);
    if (input) {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }
}

function incidentOf(alert) {
  const id = alert.details?.incident_id;
  return id === undefined ? undefined : state.incidents.find((i) => i.id === id);
}

/** What the alert is about, as an officer names it: the street, else the plate of a high
 * emitter, else the incident. */
function streetOf(alert) {
  if (alert.street) return alert.street;
  if (alert.details?.plate) return alert.details.plate;
  const incident = incidentOf(alert);
  if (incident) return incident.name;
  return alert.segment_id ? t('unnamedStreet') : t('noStreet');
}

/** Where to show the alert: its point, else its incident's source. */
function pointOf(alert) {
  if (alert.point) return alert.point;
  const incident = incidentOf(alert);
  return incident ? { lon: incident.lon, lat: incident.lat } : null;
}

function alertCard(alert) {
  const unit = displayUnit(alert.unit);
  const passes = alertPasses(alert);
  const note = h('input', {
    type: 'text',
    name: 'note',
    maxlength: '500',
    placeholder: t('notePlaceholder'),
    'aria-label': t('note'),
    oninput: (e) => state.notes.set(alert.id, e.target.value),
  });
  note.value = state.notes.get(alert.id) ?? '';
  const act = (verb) => () => actOn(alert.id, verb, note.value.trim());
  return h(
    'li',
    {
      class: `alert kind-${alert.kind} severity-${alert.severity} status-${alert.status}`,
      dataset: { alertId: String(alert.id) },
    },
    h(
      'div',
      { class: 'alert-head' },
      h('span', { class: 'badge' }, t(`severity_${alert.severity}`)),
      h('strong', { class: 'street' }, streetOf(alert)),
      h('span', { class: 'status' }, t(`status_${alert.status}`)),
    ),
    h(
      'div',
      { class: 'alert-line' },
      `#${alert.id} · ${t(`kind_${alert.kind}`)} · ${POLLUTANT_NAMES[alert.pollutant] ?? alert.pollutant}`,
      pointOf(alert)
        ? h('a', { href: '#', class: 'locate', onclick: (e) => { e.preventDefault(); flyTo(pointOf(alert)); } },
            t('location', { lat: pointOf(alert).lat.toFixed(5), lon: pointOf(alert).lon.toFixed(5) }))
        : null,
    ),
    h('div', { class: 'alert-line' }, t('ruleLimit', {
      rule: [alert.rule, ...(alert.rules || []).filter((r) => r !== alert.rule)]
        .map((r) => ruleName(state.lang, r))
        .join(', '),
      limit: number(alert.limit_value, 2),
      unit,
      averaging: alert.averaging ?? '–',
    })),
    h('div', { class: 'alert-line' }, t('valueRatio', {
      value: number(alert.last_value),
      peak: number(alert.peak_value),
      unit,
      ratio: alert.peak_ratio === null ? '–' : number(alert.peak_ratio, 2),
    })),
    h('div', { class: 'alert-line' },
      // Walk-through alerts count drive passes; the other kinds, groups of exceedances.
      alert.kind === 'walkthrough'
        ? t('passes', { count: passes.flagged + passes.clean })
        : t('occurrences', { count: alert.occurrences }),
      ' · ',
      t('vehiclesList', { list: alert.vehicles.join(', ') || '–' })),
    h('details', {
      class: 'timeline',
      open: state.openTimelines.has(alert.id),
      ontoggle: (e) => (e.target.open ? state.openTimelines.add(alert.id) : state.openTimelines.delete(alert.id)),
    },
      h('summary', {}, t('timeline')),
      h('ol', {}, alertTimeline(alert).map((e) =>
        h('li', {}, h('time', { datetime: e.at }, time(e.at)), ' ', t(e.key, e.params), e.note ? ` — “${e.note}”` : '')))),
    alert.status === 'resolved'
      ? null
      : h(
          'div',
          { class: 'actions' },
          note,
          alert.status === 'open' ? h('button', { type: 'button', class: 'ack', onclick: act('ack') }, t('acknowledge')) : null,
          h('button', { type: 'button', class: 'resolve', onclick: act('resolve') }, t('resolve')),
        ),
  );
}

async function actOn(alertId, verb, note) {
  clearError();
  try {
    const body = note ? { note } : {};
    const updated = await api.request(`/api/v1/alerts/${alertId}/${verb}`, { method: 'POST', body });
    state.notes.delete(alertId);
    state.alerts.set(updated.id, updated);
    renderAlerts();
  } catch (e) {
    showError(e);
  }
}

function flyTo(point) {
  state.map.flyTo({ center: [point.lon, point.lat], zoom: Math.max(state.map.getZoom(), 15) });
}

/** The alert ``id`` fetched again after an event (street, values and notes are not in it). */
const refetching = new Set();
async function refetchAlert(id) {
  if (refetching.has(id)) return;
  refetching.add(id);
  try {
    const alert = await api.request(`/api/v1/alerts/${id}`);
    state.alerts.set(alert.id, alert);
    renderAlerts();
  } catch (e) {
    if (!(e instanceof api.ApiError && e.status === 404)) showError(e);
  } finally {
    refetching.delete(id);
  }
}

// --- vehicles, remote sensing, incidents ------------------------------------------------------

const flushVehicles = throttle(() => {
  if (!state.map || !state.vehicles.dirty) return;
  const started = performance.now();
  setData(state.map, 'vehicles', state.vehicles.collection());
  state.vehicleFlushes += 1;
  state.vehicleFlushMs.push(performance.now() - started);
  renderCounts();
}, 1000);

async function loadVehicles() {
  if (state.positionsLive) return;
  await api.allPages('/api/v1/vehicles', { limit: '10000' }, (items) => {
    for (const row of items) state.vehicles.update(fromVehicleRow(row));
  }, { cursorParam: 'after', nextKey: 'next_after' });
  flushVehicles();
}

async function loadEmitters() {
  const page = await api.request('/api/v1/high-emitters', { params: new URLSearchParams({ limit: '200' }) });
  state.emitters = page.items.filter((e) => e.current);
  drawEmitters();
  renderEmitters();
}

function emitterPoint(emitter) {
  const last = emitter.evidence[emitter.evidence.length - 1];
  return last && last.segment_id ? state.segmentMid.get(last.segment_id) : undefined;
}

function drawEmitters() {
  if (!state.map) return;
  const features = state.emitters
    .map((e) => [e, emitterPoint(e)])
    .filter(([, point]) => point)
    .map(([e, point]) => ({
      type: 'Feature',
      geometry: { type: 'Point', coordinates: point },
      properties: { plate: e.plate, pollutant: e.pollutant },
    }));
  setData(state.map, 'emitters', { type: 'FeatureCollection', features });
}

function renderEmitters() {
  const list = $('emitter-list');
  list.replaceChildren(
    ...(state.emitters.length
      ? state.emitters.map((e) => {
          const last = e.evidence[e.evidence.length - 1] || {};
          return h('li', {},
            h('strong', {}, e.plate), ` · ${POLLUTANT_NAMES[e.pollutant] ?? e.pollutant} `,
            `${number(e.last_value, 2)} / ${number(e.limit_value, 2)} ${displayUnit(e.unit)}`,
            last.site_id ? ` · ${t('site', { id: last.site_id })}` : '',
            ` · ${time(e.last_confirmed_at)}`);
        })
      : [h('li', { class: 'empty' }, t('noHighEmitters'))]),
  );
}

async function loadIncidents() {
  const page = await api.request('/api/v1/incidents', { params: new URLSearchParams({ status: 'open', limit: '20' }) });
  state.incidents = page.items;
  const collections = await Promise.all(
    page.items.map((i) => api.request(`/api/v1/incidents/${i.id}/assessment.geojson`)),
  );
  const features = collections.flatMap((c) => c.features);
  state.incidentCollection = { type: 'FeatureCollection', features };
  setData(state.map, 'incidents', state.incidentCollection);
  renderAlerts(); // emergency alerts name their incident
  renderIncidents();
}

function renderIncidents() {
  const list = $('incident-list');
  list.replaceChildren(
    ...(state.incidents.length
      ? state.incidents.map((i) =>
          h('li', {},
            h('strong', {}, i.name), ` · ${i.suspected_substances.join(', ') || '–'} · ${time(i.started_at)} `,
            h('a', { href: '#', onclick: (e) => { e.preventDefault(); state.map.flyTo({ center: [i.lon, i.lat], zoom: 13 }); } }, t('showOnMap'))))
      : [h('li', { class: 'empty' }, t('noIncidents'))]),
  );
}

const reloadIncidents = throttle(() => loadIncidents().catch(showError), 5000);
const reloadEmitters = throttle(() => loadEmitters().catch(showError), 5000);

// --- the live stream --------------------------------------------------------------------------

function startLive() {
  stopLive();
  // EventSource cannot send headers: this one route takes the token as a query parameter. On a
  // dropped connection the browser reconnects by itself with Last-Event-ID.
  const url = `/api/v1/events?access_token=${encodeURIComponent(api.storedToken())}`;
  const stream = new EventSource(url);
  stream.addEventListener('alert', (message) => {
    const event = JSON.parse(message.data);
    const { alerts, refetch } = applyAlertEvent(state.alerts, event);
    state.alerts = alerts;
    renderAlerts();
    refetchAlert(refetch).then(() => {
      const alert = state.alerts.get(refetch);
      if (event.type === 'opened' && alert?.point) recolourAround(alert.point).catch(showError);
    });
    // What else an alert changes: an incident's assessment, the list of high emitters.
    if (event.kind === 'emergency') reloadIncidents();
    if (event.kind === 'remote_sensing') reloadEmitters();
  });
  // One event per tick of the server: the vehicles that moved since the last one.
  stream.addEventListener('positions', (message) => {
    state.positionsLive = true;
    if (state.vehicles.updateMany(JSON.parse(message.data).positions) > 0) flushVehicles();
  });
  stream.addEventListener('open', () => setLive(true));
  stream.addEventListener('error', () => {
    setLive(false);
    // The browser reconnects by itself (with Last-Event-ID) after a network error, but gives
    // up on an HTTP error: an expired token, or a server answering 503 while it restarts.
    if (stream.readyState === EventSource.CLOSED) setTimeout(() => resumeLive(stream), STREAM_RETRY_MS);
  });
  state.stream = stream;
  // Until the stream has carried positions (a server without them, or none moving yet), the
  // vehicles' last positions are polled.
  state.timers.push(setInterval(() => loadVehicles().catch(showError), VEHICLE_POLL_MS));
  state.timers.push(setInterval(() => refreshStats().catch(showError), SEGMENT_REFRESH_MS));
}

/** A new stream after the browser gave up on ``closed``, if the session is still valid (a
 * 401 logs out). The events missed cannot be replayed to a new EventSource, so the alert list
 * is loaded again. */
async function resumeLive(closed) {
  if (state.stream !== closed) return; // logged out, or already resumed
  try {
    await api.request('/api/v1/auth/me');
    startLive();
    await loadAlerts();
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) showError(e);
    else setTimeout(() => resumeLive(closed), STREAM_RETRY_MS);
  }
}

function setLive(live) {
  state.live = live;
  const badge = $('live');
  badge.textContent = live ? t('live') : t('reconnecting');
  badge.className = live ? 'live on' : 'live off';
}

function stopLive() {
  if (state.stream) state.stream.close();
  state.stream = null;
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
}

// --- controls ---------------------------------------------------------------------------------

function options(select, values, label, anyLabel) {
  const current = select.value;
  select.replaceChildren(
    ...(anyLabel ? [h('option', { value: '' }, anyLabel)] : []),
    ...values.map((v) => h('option', { value: v }, label(v))),
  );
  select.value = current;
}

function fillFilters() {
  options($('pollutant'), POLLUTANTS, (p) => POLLUTANT_NAMES[p]);
  $('pollutant').value = state.pollutant;
  options($('f-kind'), KINDS, (k) => t(`kind_${k}`), t('any'));
  options($('f-pollutant'), POLLUTANTS, (p) => POLLUTANT_NAMES[p], t('any'));
  options($('f-rule'), RULES, (r) => ruleName(state.lang, r), t('any'));
  options($('f-severity'), SEVERITIES, (s) => t(`severity_${s}`), t('any'));
  options($('f-status'), ['unresolved', 'open', 'acknowledged', 'resolved'], (s) => t(s === 'unresolved' ? 'unresolved' : `status_${s}`), t('any'));
  for (const key of Object.keys(state.filter)) $(`f-${key}`).value = state.filter[key];
  $('language').replaceChildren(...LANGUAGES.map((l) => h('option', { value: l }, l === 'zh' ? '中文' : 'English')));
  $('language').value = state.lang;
}

function wireMap(map) {
  map.on('click', 'segments', (e) => {
    const segment = state.segmentById.get(e.features[0].properties.id);
    if (!segment) return;
    const limit = limitNow();
    const ratio = segmentRatio(segment.mean, limit);
    showPopup(map, e.lngLat, h('div', {},
      h('strong', {}, segment.name || t('unnamedStreet')), h('br'),
      `${POLLUTANT_NAMES[state.pollutant]} ${segment.mean === null ? '–' : number(segment.mean)} ${limit ? displayUnit(limit.unit) : ''}`,
      ratio === null ? '' : ` · C/S ${number(ratio, 2)}`, h('br'), `#${segment.id} · n=${segment.readings}`));
  });
  map.on('click', 'alerts', (e) => {
    const alert = state.alerts.get(e.features[0].properties.id);
    if (alert) showPopup(map, e.lngLat, alertCard(alert));
  });
  map.on('click', 'vehicles', (e) => {
    const p = e.features[0].properties;
    showPopup(map, e.lngLat, h('div', {}, h('strong', {}, p.vehicle_id), h('br'), `${t(`kind_${p.kind}`)} · ${time(p.ts)}`));
  });
  map.on('click', 'incident-cells', (e) => {
    const p = e.features[0].properties;
    showPopup(map, e.lngLat, h('div', {}, `${p.substance}: ${p.sector_name}, ${JSON.parse(p.ring_km).join('–')} km`, h('br'),
      `max ${number(p.max, 2)} ${p.unit} · ${p.worst_tier ?? '–'}`));
  });
  for (const layer of ['segments', 'alerts', 'vehicles', 'incident-cells']) {
    map.on('mouseenter', layer, () => { map.getCanvas().style.cursor = 'pointer'; });
    map.on('mouseleave', layer, () => { map.getCanvas().style.cursor = ''; });
  }
}

function wireControls() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('language').addEventListener('change', (e) => setLanguage(e.target.value));
  $('pollutant').addEventListener('change', (e) => {
    state.pollutant = e.target.value;
    state.map.removeFeatureState({ source: 'segments' });
    loadSegments({ fit: false, reloadNetwork: false }).catch(showError);
  });
  for (const key of Object.keys(state.filter)) {
    $(`f-${key}`).addEventListener('change', (e) => {
      state.filter[key] = e.target.value;
      loadAlerts().catch(showError);
    });
  }
  $('message').addEventListener('click', clearError);
}

wireControls();
applyLanguage();
if (api.storedToken()) start().catch(showError);
