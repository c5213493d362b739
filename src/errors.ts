/**
 * Typed errors. Each carries the place it is about (a config path, a file, a topic, a URL) so that
 * the message a user reads says what was wrong and where.
 */
export class BeatsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export interface ConfigIssue {
  /** Dotted path into the pipeline file, e.g. `cameras[0].source.url`. */
  path: string;
  message: string;
}

/** A pipeline file that cannot be used. The CLI exits with code 2 on it. */
export class ConfigError extends BeatsError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];
  constructor(file: string, issues: ConfigIssue[]) {
    super(`${file}: invalid pipeline\n` + issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n'));
    this.file = file;
    this.issues = issues;
  }
}

/** A video source that cannot be opened or read. */
export class SourceError extends BeatsError {
  constructor(readonly source: string, message: string, options?: { cause?: unknown }) {
    super(`${source}: ${message}`, options);
  }
}

/** A model (card, ONNX file, registry entry) that cannot be loaded or fetched. */
export class ModelError extends BeatsError {
  constructor(readonly model: string, message: string, options?: { cause?: unknown }) {
    super(`model ${model}: ${message}`, options);
  }
}

/** The MQTT side: broker unreachable, embedded broker cannot listen. */
export class PublishError extends BeatsError {
  constructor(readonly where: string, message: string, options?: { cause?: unknown }) {
    super(`${where}: ${message}`, options);
  }
}

/** A folder or file of state_dir (outbox, snapshots, head versions) that cannot be made or written. */
export class StateError extends BeatsError {
  constructor(readonly where: string, message: string, options?: { cause?: unknown }) {
    super(`${where}: ${message}`, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
