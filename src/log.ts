/**
 * A small leveled logger to stderr. One line per record: human-readable by default, JSON lines when
 * BEATS_LOG_FORMAT=json (for journald or a log shipper). Level from BEATS_LOG_LEVEL (default info).
 * Every record's URLs lose their credentials here, whatever the caller did (redact.ts), and control
 * characters are escaped when a line is written, so text from outside (an MQTT payload, a topic, a
 * client id) can neither forge a log line with a newline nor drive the terminal with escape sequences.
 * Lines caused by outside input go through `limited(key)`: a flood of them is summarised, not written.
 */
import { redactSecrets } from './redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogRecord {
  level: LogLevel;
  component: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export type LogSink = (record: LogRecord) => void;

/** C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides. */
const UNSAFE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r' };

/** `text` on one line with nothing a terminal acts on: `\n`, `\r`, else `\xHH` / `\uHHHH` (tabs kept). */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, (c) => NAMED[c] ?? (c.charCodeAt(0) < 0x100 ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`));
}

function hex(c: string, width: number): string {
  return c.charCodeAt(0).toString(16).padStart(width, '0');
}

/** One record as the line written to stderr (newline included): human-readable, or JSON. */
export function formatRecord(record: LogRecord, time: Date, format: 'human' | 'json'): string {
  if (format === 'json') {
    // JSON.stringify escapes C0 controls but leaves DEL, C1 and U+2028/9 raw: `\uHHHH` is valid JSON.
    const json = JSON.stringify({ time: time.toISOString(), level: record.level, component: record.component, msg: record.msg, ...record.fields });
    return json.replace(UNSAFE, (c) => `\\u${hex(c, 4)}`) + '\n';
  }
  const extra = record.fields && Object.keys(record.fields).length > 0 ? ' ' + JSON.stringify(record.fields) : '';
  return escapeControl(`${time.toISOString().slice(11, 23)} ${record.level.toUpperCase().padEnd(5)} [${record.component}] ${record.msg}${extra}`) + '\n';
}

function defaultSink(record: LogRecord): void {
  process.stderr.write(formatRecord(record, new Date(), process.env.BEATS_LOG_FORMAT === 'json' ? 'json' : 'human'));
}

let sink: LogSink = defaultSink;
let threshold = ORDER[(process.env.BEATS_LOG_LEVEL as LogLevel | undefined) ?? 'info'] ?? ORDER.info;

/** Redirects every logger (tests read what the pipeline says this way). Returns the previous sink. */
export function setLogSink(next: LogSink): LogSink {
  const prev = sink;
  sink = next;
  return prev;
}

export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
  /**
   * This logger with its lines under `key` limited: for lines that outside input causes (one per bad
   * MQTT message, per refused client), so that a flood of it cannot flood the log. Per component and
   * key, the first `burst` lines of a window are written; the rest are counted, and one line at the
   * window's end says how many were suppressed.
   */
  limited(key: string): Logger;
}

export interface LogLimits {
  /** Lines written per component and key in one window. */
  burst: number;
  windowMs: number;
  /** Keys followed at once; beyond, new keys share one. */
  maxKeys: number;
}

const DEFAULT_LIMITS: LogLimits = { burst: 5, windowMs: 60_000, maxKeys: 1000 };
let limits = DEFAULT_LIMITS;

/** Sets the limits of `limited` loggers (tests shorten the window); no argument: the defaults. */
export function setLogLimits(next?: Partial<LogLimits>): void {
  limits = { ...DEFAULT_LIMITS, ...next };
}

interface Window {
  start: number;
  written: number;
  suppressed: number;
  level: LogLevel;
  timer?: NodeJS.Timeout;
}

const windows = new Map<string, Window>();
const OVERFLOW_KEY = '(other keys)';

/** Whether a line under `key` is written now; a suppressed one is counted and reported later. */
function admit(component: string, key: string, level: LogLevel): boolean {
  const now = Date.now();
  let id = `${component}\u0000${key}`;
  let w = windows.get(id);
  if (!w && windows.size >= limits.maxKeys) {
    for (const [k, v] of windows) if (!v.timer && now - v.start >= limits.windowMs) windows.delete(k);
    if (windows.size >= limits.maxKeys) {
      key = OVERFLOW_KEY;
      id = `${component}\u0000${key}`;
      w = windows.get(id);
    }
  }
  if (!w || (!w.timer && now - w.start >= limits.windowMs)) {
    w = { start: now, written: 0, suppressed: 0, level };
    windows.set(id, w);
  }
  if (w.written < limits.burst) {
    w.written++;
    return true;
  }
  w.suppressed++;
  if (ORDER[level] > ORDER[w.level]) w.level = level;
  if (!w.timer) w.timer = scheduleSummary(component, key, id, w);
  return false;
}

function scheduleSummary(component: string, key: string, id: string, w: Window): NodeJS.Timeout {
  const timer = setTimeout(() => {
    const windowS = limits.windowMs / 1000;
    if (ORDER[w.level] >= threshold) sink({ level: w.level, component, msg: redactSecrets(`${key}: ${w.suppressed} similar line${w.suppressed === 1 ? '' : 's'} suppressed in the last ${windowS} s`), fields: { suppressed: w.suppressed } });
    windows.delete(id);
  }, Math.max(0, w.start + limits.windowMs - Date.now()));
  timer.unref();
  return timer;
}

function redactFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[key] = typeof value === 'string' ? redactSecrets(value) : value;
  return out;
}

export function logger(component: string, key?: string): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < threshold || (key !== undefined && !admit(component, key, level))) return;
    sink({ level, component, msg: redactSecrets(msg), fields: fields && redactFields(fields) });
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (sub) => logger(`${component}/${sub}`, key),
    limited: (next) => logger(component, next),
  };
}
