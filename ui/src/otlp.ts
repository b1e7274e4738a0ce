// Decoding of OTLP/JSON traces (the correlated API's `trace`) into flat spans.

export type AttrValue = string | number | boolean | null | AttrValue[] | { [k: string]: AttrValue };

export interface SpanEvent { name: string; offsetNs: number; attributes: [string, AttrValue][] }
export interface SpanLink { traceId: string; spanId: string; attributes: [string, AttrValue][] }

export interface Span {
  spanId: string;
  parentId: string;
  traceId: string;
  name: string;
  service: string;
  kind: string;
  /** nanoseconds since the trace's first span started */
  startNs: number;
  endNs: number;
  statusCode: 'UNSET' | 'OK' | 'ERROR';
  statusMessage: string;
  attributes: [string, AttrValue][];
  resource: [string, AttrValue][];
  scope: string;
  events: SpanEvent[];
  links: SpanLink[];
}

export interface Trace {
  traceId: string;
  /** unix nanoseconds of the first span's start, as a BigInt */
  startUnixNano: bigint;
  durationNs: number;
  spans: Span[];
}

const kinds = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];

/** anyValue turns an OTLP/JSON AnyValue into a plain value. */
export function anyValue(v: any): AttrValue {
  if (v == null) return null;
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('boolValue' in v) return Boolean(v.boolValue);
  if ('bytesValue' in v) return v.bytesValue;
  if ('arrayValue' in v) return (v.arrayValue.values ?? []).map(anyValue);
  if ('kvlistValue' in v) {
    const out: { [k: string]: AttrValue } = {};
    for (const kv of v.kvlistValue.values ?? []) out[kv.key] = anyValue(kv.value);
    return out;
  }
  return null;
}

export function attrs(list: any[] | undefined): [string, AttrValue][] {
  return (list ?? []).map((kv) => [kv.key, anyValue(kv.value)] as [string, AttrValue]);
}

export function formatValue(v: AttrValue): string {
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function kindName(k: unknown): string {
  if (typeof k === 'number') return kinds[k] ?? 'UNSPECIFIED';
  if (typeof k === 'string') return k.replace(/^SPAN_KIND_/, '');
  return 'UNSPECIFIED';
}

function statusName(c: unknown): Span['statusCode'] {
  if (c === 2 || c === 'STATUS_CODE_ERROR') return 'ERROR';
  if (c === 1 || c === 'STATUS_CODE_OK') return 'OK';
  return 'UNSET';
}

/** parseTrace flattens OTLP/JSON TracesData. Times become offsets from the earliest start. */
export function parseTrace(traceId: string, data: any): Trace {
  type Raw = { s: any; res: [string, AttrValue][]; service: string; scope: string };
  const raws: Raw[] = [];
  for (const rs of data?.resourceSpans ?? []) {
    const res = attrs(rs.resource?.attributes);
    const svc = res.find(([k]) => k === 'service.name');
    const service = svc ? formatValue(svc[1]) : 'unknown_service';
    for (const ss of rs.scopeSpans ?? []) {
      const scope = ss.scope?.name ?? '';
      for (const s of ss.spans ?? []) raws.push({ s, res, service, scope });
    }
  }
  let min = -1n;
  let max = 0n;
  for (const r of raws) {
    const st = BigInt(r.s.startTimeUnixNano ?? 0);
    const en = BigInt(r.s.endTimeUnixNano ?? 0);
    if (min < 0n || st < min) min = st;
    if (en > max) max = en;
  }
  if (min < 0n) min = 0n;
  const spans = raws.map(({ s, res, service, scope }): Span => {
    const st = Number(BigInt(s.startTimeUnixNano ?? 0) - min);
    const en = Math.max(st, Number(BigInt(s.endTimeUnixNano ?? 0) - min));
    return {
      spanId: s.spanId ?? '',
      parentId: s.parentSpanId ?? '',
      traceId: s.traceId ?? traceId,
      name: s.name ?? '',
      service,
      kind: kindName(s.kind),
      startNs: st,
      endNs: en,
      statusCode: statusName(s.status?.code),
      statusMessage: s.status?.message ?? '',
      attributes: attrs(s.attributes),
      resource: res,
      scope,
      events: (s.events ?? []).map((e: any) => ({
        name: e.name ?? '', offsetNs: Number(BigInt(e.timeUnixNano ?? 0) - min) - st, attributes: attrs(e.attributes),
      })),
      links: (s.links ?? []).map((l: any) => ({ traceId: l.traceId ?? '', spanId: l.spanId ?? '', attributes: attrs(l.attributes) })),
    };
  });
  return { traceId, startUnixNano: min, durationNs: Number(max > min ? max - min : 0n), spans };
}
