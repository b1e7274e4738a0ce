// Calls to Lumen's HTTP APIs, with their errors made readable.
import { useEffect, useState } from 'preact/hooks';

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

// tabValue is a value kept for this browser tab only (sessionStorage:
// never in the URL, gone when the tab closes); empty removes it.
function tabValue(key: string): [get: () => string, set: (v: string) => void] {
  return [
    () => {
      try {
        return sessionStorage.getItem(key) ?? '';
      } catch {
        return '';
      }
    },
    (v) => {
      if (v) sessionStorage.setItem(key, v);
      else sessionStorage.removeItem(key);
    },
  ];
}

/** The token the server asked for. */
export const [getToken, setToken] = tabValue('lumen.token');

/** The tenant chosen in this tab (X-Scope-OrgID); empty: the server's default, or the one the token is bound to. */
export const [getTenant, setTenant] = tabValue('lumen.tenant');

function b64url(s: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** AUTH_EVENT is dispatched on window when the server answers 401: the UI asks for a token. */
export const AUTH_EVENT = 'lumen-auth-needed';

/** authHeaders are the headers every API call carries. */
export function authHeaders(): Record<string, string> {
  // X-Requested-With: the server leaves out the Basic challenge, which
  // would open the browser's own login dialog over the UI's prompt.
  const h: Record<string, string> = { Accept: 'application/json', 'X-Requested-With': 'lumen-ui' };
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  const tenant = getTenant();
  if (tenant) h['X-Scope-OrgID'] = tenant;
  return h;
}

/**
 * wsProtocols are the subprotocols a websocket offers: the tail's own,
 * and the token and the tenant (base64url), since a browser cannot set
 * headers on a websocket.
 */
export function wsProtocols(): string[] {
  const p = ['lumen'];
  const t = getToken();
  if (t) p.push(`lumen.bearer.${b64url(t)}`);
  const tenant = getTenant();
  if (tenant) p.push(`lumen.tenant.${b64url(tenant)}`);
  return p;
}

/** TenantInfo is /api/v1/tenants: allowed null means any tenant may be named. */
export interface TenantInfo { enabled: boolean; tenant: string; default: string; allowed: string[] | null }

/** getJSON fetches an API path; a failure throws ApiError with the server's own message. */
export async function getJSON<T = any>(path: string, params?: URLSearchParams, signal?: AbortSignal): Promise<T> {
  const url = params && [...params.keys()].length ? `${path}?${params}` : path;
  let resp: Response;
  try {
    resp = await fetch(url, { signal, headers: authHeaders() });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, `cannot reach Lumen at ${location.host}: ${(e as Error).message}`);
  }
  const text = await resp.text();
  let body: any = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    /* a plain-text answer, as Loki gives for errors */
  }
  if (resp.status === 401) window.dispatchEvent(new CustomEvent(AUTH_EVENT, { detail: text.trim() }));
  if (!resp.ok || body?.status === 'error') {
    const msg = body?.error ?? body?.message ?? (text.trim() || resp.statusText);
    throw new ApiError(resp.status, `${resp.status} ${resp.statusText}: ${msg}`);
  }
  return body as T;
}

export interface PromSeries { metric: Record<string, string>; values?: [number, string][]; value?: [number, string] }
export interface PromExemplars { seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }

export const prom = {
  async instant(query: string, time: number, signal?: AbortSignal): Promise<PromSeries[]> {
    const r = await getJSON('/api/v1/query', new URLSearchParams({ query, time: String(time / 1000) }), signal);
    return r.data.resultType === 'vector' ? r.data.result : [];
  },
  async range(query: string, start: number, end: number, step: number, signal?: AbortSignal): Promise<PromSeries[]> {
    const p = new URLSearchParams({ query, start: String(start / 1000), end: String(end / 1000), step: String(step) });
    const r = await getJSON('/api/v1/query_range', p, signal);
    return r.data.result;
  },
  async exemplars(query: string, start: number, end: number, signal?: AbortSignal): Promise<PromExemplars[]> {
    const p = new URLSearchParams({ query, start: String(start / 1000), end: String(end / 1000) });
    return (await getJSON('/api/v1/query_exemplars', p, signal)).data ?? [];
  },
  async labelValues(name: string, match?: string, signal?: AbortSignal): Promise<string[]> {
    const p = new URLSearchParams();
    if (match) p.set('match[]', match);
    return (await getJSON(`/api/v1/label/${encodeURIComponent(name)}/values`, p, signal)).data ?? [];
  },
  async labelNames(match?: string, signal?: AbortSignal): Promise<string[]> {
    const p = new URLSearchParams();
    if (match) p.set('match[]', match);
    return (await getJSON('/api/v1/labels', p, signal)).data ?? [];
  },
};

function nsParams(start: number, end: number): Record<string, string> {
  return { start: `${start}000000`, end: `${end}000000` };
}

export interface LokiStream { stream: Record<string, string>; values: [string, string][] }

export const loki = {
  async range(query: string, start: number, end: number, opts: { limit?: number; step?: number; direction?: string } = {}, signal?: AbortSignal) {
    const p = new URLSearchParams({ query, ...nsParams(start, end), limit: String(opts.limit ?? 500), direction: opts.direction ?? 'backward' });
    if (opts.step) p.set('step', `${opts.step}s`);
    return (await getJSON('/loki/api/v1/query_range', p, signal)).data as { resultType: 'streams' | 'matrix'; result: any[] };
  },
  async labels(start: number, end: number, signal?: AbortSignal): Promise<string[]> {
    return (await getJSON('/loki/api/v1/labels', new URLSearchParams(nsParams(start, end)), signal)).data ?? [];
  },
  async labelValues(name: string, start: number, end: number, signal?: AbortSignal): Promise<string[]> {
    return (await getJSON(`/loki/api/v1/label/${encodeURIComponent(name)}/values`, new URLSearchParams(nsParams(start, end)), signal)).data ?? [];
  },
  async series(selector: string, start: number, end: number, signal?: AbortSignal): Promise<Record<string, string>[]> {
    const p = new URLSearchParams({ 'match[]': selector, ...nsParams(start, end) });
    return (await getJSON('/loki/api/v1/series', p, signal)).data ?? [];
  },
};

export interface AsyncState<T> { loading: boolean; error: string; data: T | undefined }

/**
 * useAsync runs fn whenever deps change, cancelling the previous run; a
 * null fn means nothing to load.
 */
export function useAsync<T>(fn: ((signal: AbortSignal) => Promise<T>) | null, deps: unknown[]): AsyncState<T> {
  const [state, setState] = useState<AsyncState<T>>({ loading: !!fn, error: '', data: undefined });
  useEffect(() => {
    if (!fn) {
      setState({ loading: false, error: '', data: undefined });
      return undefined;
    }
    const ctl = new AbortController();
    setState((s) => ({ loading: true, error: '', data: s.data }));
    fn(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ loading: false, error: '', data }),
      (e) => !ctl.signal.aborted && setState({ loading: false, error: (e as Error).message, data: undefined }),
    );
    return () => ctl.abort();
  }, deps);
  return state;
}
