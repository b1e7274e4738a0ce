// Routes live in the URL's fragment (#/trace/<id>?tab=logs), so every page,
// query and time range is a link and the back button works, and no UI path
// can collide with the API paths (/metrics is Lumen's own metrics endpoint).

export type Page = 'traces' | 'trace' | 'logs' | 'metrics' | 'services' | 'alerts' | 'alert';
const pages: Page[] = ['traces', 'trace', 'logs', 'metrics', 'services', 'alerts', 'alert'];

export interface Route { page: Page; id: string; params: URLSearchParams }

export function parseHash(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  const q = h.indexOf('?');
  const path = (q >= 0 ? h.slice(0, q) : h).split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : '');
  const page = (pages as string[]).includes(path[0]) ? (path[0] as Page) : 'traces';
  return { page, id: page === 'trace' ? path[1] ?? '' : '', params };
}

/** href builds a link; empty parameters are left out so URLs stay short. */
export function href(page: Page, params: Record<string, string | undefined> | URLSearchParams = {}, id = ''): string {
  const p = new URLSearchParams();
  const entries = params instanceof URLSearchParams ? [...params.entries()] : Object.entries(params);
  for (const [k, v] of entries) if (v) p.append(k, v);
  const qs = p.toString();
  return `#/${page}${id ? `/${encodeURIComponent(id)}` : ''}${qs ? `?${qs}` : ''}`;
}

export function traceHref(traceId: string, params: Record<string, string | undefined> = {}): string {
  return href('trace', params, traceId.toLowerCase());
}

/** go navigates, adding a history entry unless replace is set. */
export function go(to: string, replace = false): void {
  if (location.hash === to) return;
  if (replace) {
    history.replaceState(null, '', to);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else location.hash = to;
}
