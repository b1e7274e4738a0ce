// Lumen's web UI: traces, logs, metrics and services, linked by trace id.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { AUTH_EVENT, getJSON, getTenant, getToken, setTenant, setToken, type TenantInfo } from './api';
import { AlertPage, AlertsPage } from './pages/alerts';
import { LogsPage } from './pages/logs';
import { MetricsPage } from './pages/metrics';
import { ServicesPage } from './pages/services';
import { TracePage } from './pages/trace';
import { TracesPage } from './pages/traces';
import { parseHash, type Page } from './route';

const nav: { page: Page; label: string }[] = [
  { page: 'traces', label: 'Traces' },
  { page: 'logs', label: 'Logs' },
  { page: 'metrics', label: 'Metrics' },
  { page: 'services', label: 'Services' },
  { page: 'alerts', label: 'Alerts' },
];

/**
 * TokenPrompt asks for a token when the server answers 401: it is kept in
 * this tab's sessionStorage (never in the URL) and every call carries it.
 */
function TokenPrompt({ onToken }: { onToken: () => void }) {
  const [reason, setReason] = useState('');
  const [open, setOpen] = useState(false);
  useEffect(() => {
    const on = (e: Event) => {
      setReason((e as CustomEvent<string>).detail ?? '');
      setOpen(true);
    };
    window.addEventListener(AUTH_EVENT, on);
    return () => window.removeEventListener(AUTH_EVENT, on);
  }, []);
  if (!open) return null;
  return (
    <div class="token-backdrop">
      <form class="token-prompt" data-testid="token-prompt" onSubmit={(e) => {
        e.preventDefault();
        const v = ((e.target as HTMLFormElement).elements.namedItem('token') as HTMLInputElement).value.trim();
        if (!v) return;
        setToken(v);
        setOpen(false);
        onToken();
      }}>
        <h2>This Lumen asks for a token</h2>
        <p>{getToken() ? 'The token given was refused' : 'Every query needs a token with the read scope'}{reason ? `: ${reason}` : '.'}</p>
        <p class="dim">It is kept in this browser tab only, until the tab is closed.</p>
        <input name="token" type="password" autocomplete="off" aria-label="token" placeholder="token" autofocus />
        <button type="submit">Use this token</button>
      </form>
    </div>
  );
}

/**
 * TenantPicker shows the tenant the pages read, when the server keeps
 * several, and lets a user whose token may read more than one switch
 * (kept in this tab; sent as X-Scope-OrgID).
 */
function TenantPicker({ gen, onSwitch }: { gen: number; onSwitch: () => void }) {
  const [info, setInfo] = useState<TenantInfo | null>(null);
  useEffect(() => {
    getJSON<{ data: TenantInfo }>('/api/v1/tenants').then((r) => setInfo(r.data), () => setInfo(null));
  }, [gen]);
  if (!info?.enabled) return null;
  const pick = (t: string) => {
    setTenant(t);
    onSwitch();
  };
  if (info.allowed && info.allowed.length <= 1) {
    return <span class="tenant" data-testid="tenant" title="the tenant these pages read">tenant <b>{info.tenant}</b></span>;
  }
  return (
    <label class="tenant" title="the tenant these pages read (X-Scope-OrgID)">
      tenant{' '}
      {info.allowed ? (
        <select data-testid="tenant-select" value={info.tenant} onChange={(e) => pick((e.target as HTMLSelectElement).value)}>
          {info.allowed.map((t) => <option value={t}>{t}</option>)}
        </select>
      ) : (
        <input data-testid="tenant-input" value={getTenant() || info.tenant} size={12}
          onChange={(e) => pick((e.target as HTMLInputElement).value.trim())} />
      )}
    </label>
  );
}

function App() {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  // Relative times (now-1h) are resolved once per navigation, so a page's
  // queries agree with each other; Refresh moves "now".
  const [now, setNow] = useState(Date.now());
  // A new token remounts the pages, so that every query runs again with it.
  const [tokenGen, setTokenGen] = useState(0);
  useEffect(() => {
    const on = () => {
      setRoute(parseHash(location.hash));
      setNow(Date.now());
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const active = route.page === 'trace' ? 'traces' : route.page === 'alert' ? 'alerts' : route.page;
  return (
    <>
      <header class="top">
        <a class="brand" href="#/traces">Lumen</a>
        <nav>
          {nav.map((n) => <a href={`#/${n.page}`} class={n.page === active ? 'active' : ''} aria-current={n.page === active ? 'page' : undefined}>{n.label}</a>)}
        </nav>
        <form class="goto" onSubmit={(e) => {
          e.preventDefault();
          const v = ((e.target as HTMLFormElement).elements.namedItem('id') as HTMLInputElement).value.trim();
          if (v) location.hash = `#/trace/${encodeURIComponent(v.toLowerCase())}`;
        }}>
          <input name="id" placeholder="trace id" aria-label="open a trace by id" />
        </form>
        <button class="refresh" title="run the page's queries again, up to now" onClick={() => setNow(Date.now())}>↻</button>
        <TenantPicker gen={tokenGen} onSwitch={() => { setNow(Date.now()); setTokenGen((g) => g + 1); }} />
        {getToken() && <button class="signout" data-testid="forget-token" title="forget the token this tab holds" onClick={() => { setToken(''); setTenant(''); location.reload(); }}>Forget token</button>}
      </header>
      <TokenPrompt onToken={() => { setNow(Date.now()); setTokenGen((g) => g + 1); }} />
      <main key={tokenGen}>
        {route.page === 'traces' && <TracesPage key={route.params.toString()} params={route.params} now={now} />}
        {route.page === 'trace' && <TracePage id={route.id} params={route.params} />}
        {route.page === 'logs' && <LogsPage params={route.params} now={now} />}
        {route.page === 'metrics' && <MetricsPage params={route.params} now={now} />}
        {route.page === 'services' && <ServicesPage params={route.params} now={now} />}
        {route.page === 'alerts' && <AlertsPage now={now} />}
        {route.page === 'alert' && <AlertPage key={route.params.toString()} params={route.params} now={now} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
