import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './assets.js';
import { accepts, freePort, mosquittoPath, waitFor } from './brokers.js';

const run = promisify(execFile);

/**
 * Mosquitto as deploy/ configures it (TLS listener, password file, ACL), on a free port of
 * 127.0.0.1, with certificates and accounts made by deploy/make-dev-certs.sh and
 * deploy/make-mqtt-users.sh in a temporary copy of deploy/. What the tests run is the deployment's
 * own configuration: only paths and the listener's port are rewritten.
 */
export interface SecureMosquitto {
  url: string;
  port: number;
  /** The copy of deploy/ with certs/, mosquitto/passwd and .env made by the scripts. */
  dir: string;
  certs: { ca: string; clientCert: string; clientKey: string };
  /** From the .env that make-mqtt-users.sh wrote. */
  passwords: { beats: string; operator: string; viewer: string };
  stop(): Promise<void>;
}

/** Mosquitto drops root for its own user (Debian: mosquitto), which must read the files. */
function mosquittoUid(): number | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('mosquitto:'));
  return line ? Number(line.split(':')[2]) : undefined;
}

function parseEnv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** Copies deploy/ to a temporary folder and runs its scripts there. */
export async function prepareDeployCopy(): Promise<{ dir: string; uid?: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'beats-deploy-'));
  // Mosquitto's own user must get through the folders.
  chmodSync(dir, 0o755);
  cpSync(path.join(repoRoot, 'deploy'), dir, { recursive: true });
  const uid = mosquittoUid();
  const env = { ...process.env, ...(uid !== undefined ? { MOSQUITTO_UID: String(uid), BEATS_UID: String(process.getuid?.() ?? 0) } : {}) };
  await run('bash', [path.join(dir, 'make-dev-certs.sh'), path.join(dir, 'certs')], { env });
  await run('bash', [path.join(dir, 'make-mqtt-users.sh'), dir], { env });
  chmodSync(path.join(dir, 'certs'), 0o755);
  chmodSync(path.join(dir, 'mosquitto'), 0o755);
  return { dir, uid };
}

export async function startSecureMosquitto(options: { requireCertificate?: boolean } = {}): Promise<SecureMosquitto> {
  if (!mosquittoPath) throw new Error('mosquitto is not installed');
  const { dir, uid } = await prepareDeployCopy();
  const data = path.join(dir, 'data');
  mkdirSync(data);
  if (uid !== undefined) chownSync(data, uid, -1);
  const port = await freePort();
  let conf = readFileSync(path.join(dir, 'mosquitto', 'mosquitto.conf'), 'utf8')
    .replace(/^listener 8883$/m, `listener ${port} 127.0.0.1`)
    .replaceAll('/mosquitto/config/', `${path.join(dir, 'mosquitto')}/`)
    .replaceAll('/mosquitto/certs/', `${path.join(dir, 'certs')}/`)
    .replaceAll('/mosquitto/data/', `${data}/`);
  if (options.requireCertificate) conf = conf.replace(/^#require_certificate true$/m, 'require_certificate true');
  if (/(^|\s)\/mosquitto\//m.test(conf)) throw new Error('a path of deploy/mosquitto/mosquitto.conf was not rewritten');
  const confFile = path.join(dir, 'test-mosquitto.conf');
  writeFileSync(confFile, conf);

  const child: ChildProcess = spawn(mosquittoPath, ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`mosquitto exited (${code}) before it listened:\n${output}`))));
  exited.catch(() => undefined);
  await Promise.race([waitFor(() => accepts(port), 10_000, `mosquitto (deploy config) to listen on ${port}`), exited]);

  const env = parseEnv(readFileSync(path.join(dir, '.env'), 'utf8'));
  return {
    url: `mqtts://127.0.0.1:${port}`,
    port,
    dir,
    certs: { ca: path.join(dir, 'certs', 'ca.crt'), clientCert: path.join(dir, 'certs', 'client.crt'), clientKey: path.join(dir, 'certs', 'client.key') },
    passwords: { beats: env.MQTT_PASSWORD ?? '', operator: env.OPERATOR_PASSWORD ?? '', viewer: env.VIEWER_PASSWORD ?? '' },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    },
  };
}
