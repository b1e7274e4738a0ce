// Shared pieces: states (loading, empty, error), the time range picker, the
// query box with completion, tabs.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { applyCompletion, completionAt, presets, suggest, type Completion, type Range } from './query';

export function ErrorBox({ error }: { error: string }) {
  if (!error) return null;
  return <div class="error" role="alert">{error}</div>;
}

export function Loading({ what }: { what: string }) {
  return <div class="loading" role="status"><span class="spinner" /> Loading {what}…</div>;
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

/** TimeRangePicker offers the usual relative ranges and an absolute one. */
export function TimeRangePicker({ range, onChange, now }: { range: Range; onChange: (r: Range) => void; now: number }) {
  const preset = range.to === 'now' && presets.some((p) => p.from === range.from) ? range.from : 'custom';
  const [custom, setCustom] = useState(preset === 'custom');
  const abs = (s: string, fallback: number) => (/^\d+$/.test(s) ? Number(s) : fallback);
  return (
    <span class="range">
      <select aria-label="time range" value={custom ? 'custom' : preset} onChange={(e) => {
        const v = (e.target as HTMLSelectElement).value;
        if (v === 'custom') setCustom(true);
        else {
          setCustom(false);
          onChange({ from: v, to: 'now' });
        }
      }}>
        {presets.map((p) => <option value={p.from}>{p.label}</option>)}
        <option value="custom">Custom range…</option>
      </select>
      {custom && (
        <>
          <input type="datetime-local" step="1" aria-label="from" value={toLocalInput(abs(range.from, now - 3600e3))}
            onChange={(e) => onChange({ from: String(new Date((e.target as HTMLInputElement).value).getTime()), to: /^\d+$/.test(range.to) ? range.to : String(now) })} />
          <span>to</span>
          <input type="datetime-local" step="1" aria-label="to" value={toLocalInput(abs(range.to, now))}
            onChange={(e) => onChange({ from: /^\d+$/.test(range.from) ? range.from : String(now - 3600e3), to: String(new Date((e.target as HTMLInputElement).value).getTime()) })} />
        </>
      )}
    </span>
  );
}

/**
 * QueryBox is a query editor with completion: metric names, label names and
 * label values, fetched by candidates() for what is under the cursor.
 */
export function QueryBox(props: {
  value: string; onInput: (v: string) => void; onSubmit: (v: string) => void; lang: 'promql' | 'logql';
  placeholder: string; candidates: (c: Completion) => Promise<string[]>; label: string;
}) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const [items, setItems] = useState<string[]>([]);
  const [sel, setSel] = useState(0);
  const [comp, setComp] = useState<Completion | null>(null);
  const seq = useRef(0);
  // The last candidates fetched, for the completion context they belong to:
  // the list is filtered at once for every key typed, so what is shown (and
  // what Tab takes) always matches the text, even before a fetch returns.
  const cache = useRef<{ key: string; cands: string[] } | null>(null);

  const refresh = (text: string, cursor: number) => {
    const c = completionAt(text, cursor, props.lang);
    setComp(c);
    const n = ++seq.current;
    if (!c) {
      setItems([]);
      return;
    }
    const key = `${c.kind}\u0000${c.label ?? ''}\u0000${c.metric ?? ''}`;
    setItems(cache.current?.key === key ? suggest(cache.current.cands, c.prefix) : []);
    setSel(0);
    props.candidates(c).then((cands) => {
      if (n !== seq.current) return;
      cache.current = { key, cands };
      setItems(suggest(cands, c.prefix));
      setSel(0);
    }, () => n === seq.current && setItems([]));
  };

  const accept = (v: string) => {
    const el = ref.current;
    if (!el || !comp) return;
    const r = applyCompletion(el.value, comp, v);
    // The element first, at once: a key typed before the re-render must
    // land after the completed word, not in the old text.
    el.value = r.text;
    el.focus();
    el.setSelectionRange(r.cursor, r.cursor);
    props.onInput(r.text);
    setItems([]);
  };

  useEffect(() => {
    const el = ref.current;
    if (el) {
      el.style.height = 'auto';
      el.style.height = `${Math.min(200, el.scrollHeight + 2)}px`;
    }
  }, [props.value]);

  return (
    <div class="querybox">
      <textarea ref={ref} rows={1} spellcheck={false} aria-label={props.label} placeholder={props.placeholder} value={props.value}
        onInput={(e) => {
          const el = e.target as HTMLTextAreaElement;
          props.onInput(el.value);
          refresh(el.value, el.selectionStart);
        }}
        onFocus={(e) => {
          const el = e.target as HTMLTextAreaElement;
          refresh(el.value, el.selectionStart);
        }}
        onBlur={() => setTimeout(() => setItems([]), 150)}
        onKeyDown={(e) => {
          if (items.length) {
            if (e.key === 'ArrowDown') { setSel((sel + 1) % items.length); e.preventDefault(); return; }
            if (e.key === 'ArrowUp') { setSel((sel + items.length - 1) % items.length); e.preventDefault(); return; }
            if (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey)) { accept(items[sel]); e.preventDefault(); return; }
            if (e.key === 'Escape') { setItems([]); e.preventDefault(); return; }
          }
          if (e.key === 'Enter' && !e.shiftKey) {
            e.preventDefault();
            props.onSubmit((e.target as HTMLTextAreaElement).value);
          }
        }} />
      {items.length > 0 && (
        <ul class="suggestions" role="listbox">
          {items.map((it, i) => (
            <li role="option" aria-selected={i === sel} class={i === sel ? 'sel' : ''} onMouseDown={(e) => { e.preventDefault(); accept(it); }}>{it}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Tabs<T extends string>({ tabs, active, onSelect }: { tabs: { id: T; label: string }[]; active: T; onSelect: (t: T) => void }) {
  return (
    <div class="tabs" role="tablist">
      {tabs.map((t) => (
        <button role="tab" aria-selected={t.id === active} class={t.id === active ? 'active' : ''} onClick={() => onSelect(t.id)}>{t.label}</button>
      ))}
    </div>
  );
}

export function Labels({ labels, onClick }: { labels: Record<string, string>; onClick?: (k: string, v: string) => void }) {
  return (
    <span class="labels">
      {Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => (
        onClick
          ? <button class="label" title="add to the query" onClick={() => onClick(k, v)}><b>{k}</b>={v}</button>
          : <span class="label"><b>{k}</b>={v}</span>
      ))}
    </span>
  );
}

export function fmtTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
