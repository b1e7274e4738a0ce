// Lumen's web UI: traces, logs, metrics and services, linked by trace id.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
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
];

function App() {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  // Relative times (now-1h) are resolved once per navigation, so a page's
  // queries agree with each other; Refresh moves "now".
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const on = () => {
      setRoute(parseHash(location.hash));
      setNow(Date.now());
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const active = route.page === 'trace' ? 'traces' : route.page;
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
      </header>
      <main>
        {route.page === 'traces' && <TracesPage key={route.params.toString()} params={route.params} now={now} />}
        {route.page === 'trace' && <TracePage id={route.id} params={route.params} />}
        {route.page === 'logs' && <LogsPage params={route.params} now={now} />}
        {route.page === 'metrics' && <MetricsPage params={route.params} now={now} />}
        {route.page === 'services' && <ServicesPage params={route.params} now={now} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
