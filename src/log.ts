/**
 * A small leveled logger to stderr. One line per record: human-readable by default, JSON lines when
 * BEATS_LOG_FORMAT=json (for journald or a log shipper). Level from BEATS_LOG_LEVEL (default info).
 * Every record's URLs lose their credentials here, whatever the caller did (redact.ts).
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

function defaultSink(record: LogRecord): void {
  const time = new Date().toISOString();
  if (process.env.BEATS_LOG_FORMAT === 'json') {
    process.stderr.write(JSON.stringify({ time, level: record.level, component: record.component, msg: record.msg, ...record.fields }) + '\n');
    return;
  }
  const extra = record.fields && Object.keys(record.fields).length > 0 ? ' ' + JSON.stringify(record.fields) : '';
  process.stderr.write(`${time.slice(11, 23)} ${record.level.toUpperCase().padEnd(5)} [${record.component}] ${record.msg}${extra}\n`);
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
}

function redactFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[key] = typeof value === 'string' ? redactSecrets(value) : value;
  return out;
}

export function logger(component: string): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] >= threshold) sink({ level, component, msg: redactSecrets(msg), fields: fields && redactFields(fields) });
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (sub) => logger(`${component}/${sub}`),
  };
}
