// The HTTP API as the page uses it: every call carries the token of the account that logged in
// (kept in sessionStorage, so it ends with the tab), and errors keep the API's status and text.

const TOKEN_KEY = 'telemetry.token';

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail || code || `HTTP ${status}`;
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function keepToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page, say): the status alone says enough.
  }
  return new ApiError(response.status, body.error, body.detail);
}

/** ``path`` (``/api/v1/...``) with ``params``; the JSON answer, or an ApiError. */
export async function request(path, { method = 'GET', params, body } = {}) {
  const url = params ? `${path}?${params}` : path;
  const headers = { Accept: 'application/json' };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

/** Logs in (the OAuth2 password form the API takes) and keeps the token. */
export async function logIn(username, password) {
  const response = await fetch('/api/v1/auth/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams({ username, password, grant_type: 'password' }),
  });
  if (!response.ok) throw await errorOf(response);
  const { access_token: token } = await response.json();
  keepToken(token);
  return token;
}

/** Revokes the token on the server (best effort: a dead token is gone anyway) and forgets it. */
export async function logOut() {
  try {
    if (storedToken()) await request('/api/v1/auth/logout', { method: 'POST' });
  } catch {
    // Already expired or revoked.
  } finally {
    keepToken(null);
  }
}

/** Every item of a paged listing: follows ``next_cursor`` (or ``next_after``) and hands each
 * page to ``onPage`` as it arrives. */
export async function allPages(path, params, onPage, { cursorParam = 'cursor', nextKey = 'next_cursor' } = {}) {
  let next = null;
  do {
    const query = new URLSearchParams(params);
    if (next !== null) query.set(cursorParam, next);
    const page = await request(path, { params: query });
    onPage(page.items);
    next = page[nextKey] ?? null;
  } while (next !== null);
}
