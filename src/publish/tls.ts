import { readFile } from 'node:fs/promises';
import { ConfigError, type ConfigIssue } from '../errors.js';

/** `mqtt.tls` of a pipeline file, paths already absolute (src/config/load.ts). */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
  reject_unauthorized: boolean;
}

/** What mqtt.js (Node's tls.connect) takes. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

/**
 * Reads the PEM files of `mqtt.tls` when the pipeline connects. A file that is missing, unreadable
 * or not PEM is a config error naming its key (`mqtt.tls.ca`) and the file.
 */
export async function readTlsFiles(tls: TlsFiles, pipelineFile: string): Promise<TlsMaterial> {
  const issues: ConfigIssue[] = [];
  const read = async (key: 'ca' | 'cert' | 'key'): Promise<Buffer | undefined> => {
    const file = tls[key];
    if (file === undefined) return undefined;
    try {
      const data = await readFile(file);
      if (!data.includes('-----BEGIN ')) {
        issues.push({ path: `mqtt.tls.${key}`, message: `${file} is not a PEM file (no -----BEGIN line)` });
        return undefined;
      }
      return data;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      issues.push({ path: `mqtt.tls.${key}`, message: code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? String(err)}` });
      return undefined;
    }
  };
  const [ca, cert, key] = [await read('ca'), await read('cert'), await read('key')];
  if (issues.length > 0) throw new ConfigError(pipelineFile, issues);
  return {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    rejectUnauthorized: tls.reject_unauthorized,
  };
}
