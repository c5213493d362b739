import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parsePipeline } from '../src/config/load.js';
import { assets, needsAssets, repoRoot } from './helpers/assets.js';
import { freePort, mosquittoPath, sleep, waitFor } from './helpers/brokers.js';
import { prepareDeployCopy, startSecureMosquitto, type SecureMosquitto } from './helpers/secure-mosquitto.js';

/**
 * What of deploy/ can be built and run on a machine without Docker engine, GPU or Jetson: the
 * compose file, the systemd unit, the Dockerfiles' structure, the x86 image's entry command run for
 * real outside Docker, the Mosquitto configuration with its TLS, passwords and ACL, and the scripts.
 */

const run = promisify(execFile);
const deploy = path.join(repoRoot, 'deploy');
const docs = readFileSync(path.join(repoRoot, 'docs', 'deploy.md'), 'utf8');

/** A command that may be missing here; in CI (CI=true) it must be there. */
function tool(name: string, args: string[], installHint: string): boolean {
  const found = spawnSync(name, args, { stdio: 'ignore' }).status === 0;
  if (!found) {
    const message = `${name} ${args.join(' ')} is not available (${installHint}): its part of the deploy tests is skipped`;
    if (process.env.CI) throw new Error(`${message}; in CI it must run`);
    console.warn(message);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}
interface Dockerfile {
  args: Record<string, string>;
  stages: Stage[];
}

/** Enough of the Dockerfile grammar for these files: comments, line continuations, ARG before FROM, stages. */
function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/\\\r?\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`not an instruction: ${line}`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`bad FROM: ${rest}`);
      const image = f[1]!.replace(/\$\{(\w+)\}/g, (_, v: string) => args[v] ?? `\${${v}}`);
      stages.push({ from: image, name: f[2], instructions: [] });
    } else if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k!] = v ?? '';
    } else {
      if (stages.length === 0) throw new Error(`${op} before the first FROM`);
      stages.at(-1)!.instructions.push({ op, args: rest });
    }
  }
  return { args, stages };
}

function execForm(stage: Stage, op: 'ENTRYPOINT' | 'CMD'): string[] {
  const found = stage.instructions.filter((i) => i.op === op).at(-1);
  if (!found) return [];
  const parsed: unknown = JSON.parse(found.args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`${op} is not in exec form: ${found.args}`);
  return parsed as string[];
}

function stageNamed(file: Dockerfile, name: string): Stage {
  const stage = file.stages.find((s) => s.name === name);
  if (!stage) throw new Error(`no stage ${name}`);
  return stage;
}

const x86 = parseDockerfile(readFileSync(path.join(deploy, 'Dockerfile'), 'utf8'));
const jetson = parseDockerfile(readFileSync(path.join(deploy, 'Dockerfile.jetson'), 'utf8'));

describe('deploy/Dockerfile (x86) and deploy/Dockerfile.jetson', () => {
  it('x86: node 24 bookworm for the CPU image (the default, last stage), NVIDIA CUDA for the cuda target', () => {
    expect(x86.stages.map((s) => s.name)).toEqual(['deps', 'ort-gpu', 'cuda', 'cpu']);
    expect(stageNamed(x86, 'cpu').from).toBe('node:24-bookworm-slim');
    expect(x86.stages.at(-1)!.name).toBe('cpu');
    expect(stageNamed(x86, 'cuda').from).toMatch(/^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-ubuntu/);
  });

  it("images run a supported Node LTS (an even major, 22 or later), while package.json's engines still admits Node 20", () => {
    const major = (version: string) => Number(/^(\d+)/.exec(version)?.[1]);
    const images = [/^node:(\d+)-/.exec(x86.args.NODE_IMAGE ?? '')?.[1] ?? '', jetson.args.NODE_VERSION ?? ''];
    for (const version of images) {
      expect(major(version) % 2, version).toBe(0);
      expect(major(version), version).toBeGreaterThanOrEqual(22);
    }
    expect(jetson.args.NODE_VERSION).toMatch(/^\d+\.\d+\.\d+$/); // the tarball and its SHASUMS256 line are named by it
    const engines = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe('>=20');
  });

  it('jetson: an L4T JetPack 6 base, onnxruntime built with CUDA, TensorRT and its Node binding', () => {
    const stageNames = new Set(jetson.stages.map((s) => s.name));
    const bases = jetson.stages.filter((s) => !stageNames.has(s.from)).map((s) => s.from);
    expect(bases.length).toBeGreaterThan(0);
    for (const base of bases) expect(base).toMatch(/^nvcr\.io\/nvidia\/l4t-jetpack:r36\./);
    const build = stageNamed(jetson, 'ort').instructions.map((i) => i.args).join('\n');
    for (const flag of ['--use_cuda', '--use_tensorrt', '--build_nodejs', '--build_shared_lib']) expect(build).toContain(flag);
    const copies = stageNamed(jetson, 'jetson').instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toContain('--from=ort /ort-node/ ./node_modules/onnxruntime-node/bin/napi-v6/linux/arm64/');
    expect(build).toMatch(/libonnxruntime_providers_cuda\.so[\s\S]*libonnxruntime_providers_tensorrt\.so/);
    expect(jetson.stages.at(-1)!.name).toBe('jetson');
  });

  it('runtime stages: system ffmpeg, npm ci without dev dependencies, a non-root user, the same entry command', () => {
    for (const stage of [stageNamed(x86, 'cpu'), stageNamed(x86, 'cuda'), stageNamed(jetson, 'jetson')]) {
      const runs = stage.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
      expect(runs, stage.name).toMatch(/apt-get install .*ffmpeg/);
      const user = stage.instructions.filter((i) => i.op === 'USER').at(-1)?.args;
      expect(user, stage.name).toBe('beats');
      expect([...execForm(stage, 'ENTRYPOINT'), ...execForm(stage, 'CMD')], stage.name).toEqual(['node', 'bin/beats.js', 'run', '/config/pipeline.yaml']);
      expect(stage.instructions.find((i) => i.op === 'WORKDIR')?.args, stage.name).toBe('/opt/beats');
    }
    for (const file of [x86, jetson]) expect(stageNamed(file, 'deps').instructions.map((i) => i.args).join('\n')).toContain('npm ci --omit=dev');
  });

  it('every file the images COPY from the build context is in the repository', () => {
    for (const file of [x86, jetson]) {
      for (const stage of file.stages) {
        for (const copy of stage.instructions.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
          const sources = copy.args.split(/\s+/).slice(0, -1);
          for (const source of sources) expect(existsSync(path.join(repoRoot, source)), `${stage.name}: COPY ${source}`).toBe(true);
        }
      }
    }
  });

  describe.skipIf(needsAssets)("the x86 image's entry command, run outside Docker", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'beats-entry-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('ENTRYPOINT + CMD of the cpu stage, on a pipeline of the highway video with --max-frames 20, exits 0', async () => {
      const cpu = stageNamed(x86, 'cpu');
      const command = [...execForm(cpu, 'ENTRYPOINT'), ...execForm(cpu, 'CMD')];
      const file = path.join(dir, 'pipeline.yaml');
      await writeFile(
        file,
        stringify({
          mqtt: { embedded: { host: '127.0.0.1', port: await freePort() } },
          state_dir: path.join(dir, 'state'),
          status_interval_s: 0,
          cameras: [{ name: 'highway', source: { url: assets.highway }, model: 'yolox-nano' }],
        }),
      );
      const args = command.map((a) => (a === '/config/pipeline.yaml' ? file : a));
      expect(args[0]).toBe('node');
      // The image's environment; WORKDIR /opt/beats is this checkout. The models folder is empty:
      // the model comes from the shared assets, as `beats models pull` would have put it there.
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', BEATS_LOG_FORMAT: 'text', BEATS_MODELS_DIR: path.join(dir, 'models') };
      const result = await run(process.execPath, [...args.slice(1), '--max-frames', '20'], { cwd: repoRoot, env, maxBuffer: 16 << 20 }).catch(
        (err: { code?: number; stderr?: string }) => ({ stdout: '', stderr: `exit ${err.code}: ${err.stderr}` }),
      );
      expect(result.stderr).toMatch(/camera highway: 20 frames processed/);
      expect(result.stderr).not.toMatch(/^exit /);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// compose.yaml

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string; target?: string };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: string[];
  restart?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
}

const composeText = readFileSync(path.join(deploy, 'compose.yaml'), 'utf8');
const compose = parse(composeText) as ComposeFile;
const exampleText = readFileSync(path.join(deploy, 'pipeline.example.yaml'), 'utf8');

/** `${VAR}`, `${VAR:-x}`, `${VAR:?x}` → VAR. */
function envRefs(text: string): string[] {
  const code = text.replace(/(^|\s)#.*$/gm, '');
  return [...new Set([...code.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!))].sort();
}

/** Strips ${VAR:-default} to its default (what compose does with an unset variable). */
function withDefaults(value: string): string {
  return value.replace(/\$\{[A-Z_][A-Z0-9_]*(?::-([^}]*))?\}/g, (_, d: string | undefined) => d ?? '');
}

describe('deploy/compose.yaml', () => {
  it('has the pipeline and Mosquitto, restarts them, and keeps models, state, engine cache and broker data on volumes', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['beats', 'mosquitto']);
    const beats = compose.services.beats!;
    expect(beats.build?.context).toBe('..');
    expect(existsSync(path.join(repoRoot, withDefaults(beats.build!.dockerfile)))).toBe(true);
    expect(withDefaults(beats.build!.target ?? '')).toBe('cpu');
    expect(beats.depends_on).toContain('mosquitto');
    for (const s of Object.values(compose.services)) expect(s.restart).toBe('unless-stopped');
    expect(beats.environment?.BEATS_MODELS_DIR).toBe('/var/lib/beats/models');
    const named = (s: ComposeService) => (s.volumes ?? []).filter((v) => !v.startsWith('.')).map((v) => v.split(':'));
    expect(named(beats)).toEqual(expect.arrayContaining([['models', '/var/lib/beats/models'], ['state', '/var/lib/beats/state'], ['cache', '/var/cache/beats']]));
    for (const [volume] of [...named(beats), ...named(compose.services.mosquitto!)]) expect(Object.keys(compose.volumes), volume).toContain(volume);
    expect(compose.services.mosquitto!.image).toMatch(/^eclipse-mosquitto:2/);
    expect(compose.services.mosquitto!.ports).toEqual(['${MQTT_PORT:-8883}:8883']);
  });

  it("the example pipeline uses mqtts:// and ${MQTT_PASSWORD}, keeps state and engines on the volumes, and validates", () => {
    const config = parsePipeline(exampleText, '/config/pipeline.yaml', { env: { MQTT_PASSWORD: 'pw' } });
    expect(config.mqtt?.url).toBe('mqtts://mosquitto:8883');
    expect(exampleText).toMatch(/password: \$\{MQTT_PASSWORD\}/);
    expect(config.mqtt?.tls?.ca).toBe('/config/certs/ca.crt');
    expect(config.state_dir).toBe('/var/lib/beats/state');
    expect(config.runtime.tensorrt.engine_cache).toBe('/var/cache/beats/trt');
    const mounts = compose.services.beats!.volumes!.map((v) => v.split(':')[1]);
    expect(mounts).toContain('/config/pipeline.yaml');
    expect(mounts).toContain(config.mqtt!.tls!.ca);
  });

  it("every bind mount's source exists once deploy/make-dev-certs.sh and make-mqtt-users.sh have run, and Mosquitto's config paths are mounted", async () => {
    const { dir } = await prepareDeployCopy();
    try {
      for (const [name, service] of Object.entries(compose.services)) {
        for (const volume of (service.volumes ?? []).filter((v) => v.startsWith('.'))) {
          const source = volume.split(':')[0]!;
          expect(existsSync(path.join(dir, source)), `${name}: ${source}`).toBe(true);
        }
      }
      const targets = compose.services.mosquitto!.volumes!.map((v) => v.split(':')[1]!);
      const conf = readFileSync(path.join(deploy, 'mosquitto', 'mosquitto.conf'), 'utf8');
      const confPaths = [...conf.matchAll(/^\s*(?:password_file|acl_file|cafile|certfile|keyfile|persistence_location)\s+(\S+)/gm)].map((m) => m[1]!);
      expect(confPaths.length).toBe(6);
      for (const p of confPaths) expect(targets.some((t) => p === t || p.startsWith(t.endsWith('/') ? t : `${t}/`)), p).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('every environment variable that compose.yaml and the example pipeline use is documented in docs/deploy.md', () => {
    const vars = envRefs(composeText + exampleText);
    expect(vars).toEqual(expect.arrayContaining(['MQTT_PASSWORD', 'CAMERA_URL']));
    for (const v of vars) expect(docs, v).toContain(v);
    // The pipeline's variables without a default reach the container.
    for (const v of [...exampleText.replace(/(^|\s)#.*$/gm, '').matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]!)) expect(Object.keys(compose.services.beats!.environment ?? {}), v).toContain(v);
  });

  const composeCommand = (() => {
    if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
    if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
    return undefined;
  })();
  if (!composeCommand) {
    const message = 'neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose): `compose config` is skipped';
    if (process.env.CI) throw new Error(`${message}; in CI it must run`);
    console.warn(message);
  }

  it.skipIf(!composeCommand)('`docker compose config` accepts it, and refuses it without MQTT_PASSWORD', async () => {
    const [bin, ...pre] = composeCommand!;
    const env: NodeJS.ProcessEnv = { ...process.env, MQTT_PASSWORD: 'from-env' };
    delete env.COMPOSE_FILE;
    const { stdout } = await run(bin!, [...pre, '-f', path.join(deploy, 'compose.yaml'), 'config'], { env, cwd: os.tmpdir() });
    const resolved = parse(stdout) as ComposeFile;
    expect(Object.keys(resolved.services).sort()).toEqual(['beats', 'mosquitto']);
    expect(resolved.services.beats!.environment?.MQTT_PASSWORD).toBe('from-env');
    const noPassword = { ...env };
    delete noPassword.MQTT_PASSWORD;
    const refused = await run(bin!, [...pre, '-f', path.join(deploy, 'compose.yaml'), 'config'], { env: noPassword, cwd: os.tmpdir() }).then(
      () => 'accepted',
      (err: { stderr?: string }) => err.stderr ?? 'refused',
    );
    expect(refused).toMatch(/make-mqtt-users\.sh/);
  });
});

// ---------------------------------------------------------------------------------------------
// systemd

describe('deploy/beats.service', () => {
  const unit = readFileSync(path.join(deploy, 'beats.service'), 'utf8');
  const directives = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);

  it('restarts on failure (not on an invalid pipeline) and is sandboxed', () => {
    expect(directives('ExecStart')).toEqual(['/usr/bin/node /opt/beats/bin/beats.js run /etc/beats/pipeline.yaml']);
    expect(directives('Restart')).toEqual(['on-failure']);
    expect(Number(directives('RestartSec')[0])).toBeGreaterThan(0);
    expect(directives('RestartPreventExitStatus')).toEqual(['2']);
    for (const [key, value] of Object.entries({
      DynamicUser: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      NoNewPrivileges: 'yes',
      StateDirectory: 'beats',
      CacheDirectory: 'beats',
      SupplementaryGroups: 'video',
      CapabilityBoundingSet: '',
      SystemCallFilter: '@system-service',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
      Environment: 'BEATS_MODELS_DIR=/var/lib/beats/models',
    })) {
      expect(directives(key), key).toContain(value);
    }
    expect(directives('DeviceAllow')).toEqual(expect.arrayContaining(['char-video4linux rw', 'char-nvidia-frontend rw', '/dev/nvhost-nvdec rw']));
    // Node's JIT needs it off.
    expect(directives('MemoryDenyWriteExecute')).toEqual([]);
  });

  const analyze = tool('systemd-analyze', ['--version'], 'apt-get install systemd');

  describe.skipIf(!analyze)('systemd-analyze', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'beats-unit-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** The unit with its paths pointed at this checkout and this node, so that ExecStart exists. */
    async function localCopy(name: string, edit: (text: string) => string = (t) => t): Promise<string> {
      const file = path.join(dir, name);
      await writeFile(file, edit(unit.replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/beats', repoRoot.replace(/\/$/, ''))));
      return file;
    }

    async function verify(file: string): Promise<{ code: number; output: string }> {
      return run('systemd-analyze', ['verify', '--man=no', file]).then(
        ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
        (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
      );
    }

    it('verify passes with no warning', async () => {
      const result = await verify(await localCopy('beats.service'));
      expect(result.code, result.output).toBe(0);
      expect(result.output.trim()).toBe('');
    });

    it('verify does catch a broken unit (the check can fail)', async () => {
      const result = await verify(await localCopy('broken.service', (t) => t.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node')));
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/nonexistent\/node/);
    });

    it('`systemd-analyze security` rates its exposure 3.0 or lower', async () => {
      const file = await localCopy('beats.service');
      const { stdout } = await run('systemd-analyze', ['security', '--offline=yes', '--threshold=30', file]).catch((err: { stdout?: string; stderr?: string }) => {
        throw new Error(`exposure above 3.0:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
      });
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(stdout)?.[1];
      expect(Number(level)).toBeLessThanOrEqual(3);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Mosquitto as deployed: TLS, password file, ACL

if (!mosquittoPath) {
  if (process.env.CI) throw new Error('mosquitto is needed for the deploy Mosquitto tests; in CI they must run');
  console.warn('mosquitto not found: the tests of deploy/mosquitto are skipped');
}

describe.skipIf(!mosquittoPath)('deploy/mosquitto: TLS, passwords, ACL', () => {
  let broker: SecureMosquitto;
  let ca: Buffer;
  beforeAll(async () => {
    broker = await startSecureMosquitto();
    ca = await readFile(broker.certs.ca);
  });
  afterAll(async () => {
    await broker?.stop();
    if (broker) await rm(broker.dir, { recursive: true, force: true });
  });

  const connect = (username?: string, password?: string) => mqtt.connectAsync(broker.url, { ca, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
  const refusal = (username?: string, password?: string) =>
    connect(username, password).then(
      async (c) => {
        await c.endAsync();
        return 'connected';
      },
      (err: Error) => err.message,
    );

  it('refuses anonymous clients and wrong passwords', async () => {
    expect(await refusal()).toMatch(/not authori[sz]ed/i);
    expect(await refusal('beats', 'nope')).toMatch(/not authori[sz]ed/i);
    expect(await refusal('beats', broker.passwords.beats)).toBe('connected');
  });

  it('only operator sends feedback; the pipeline receives it; viewers only read', async () => {
    const pipeline = await connect('beats', broker.passwords.beats);
    const operator = await connect('operator', broker.passwords.operator);
    const viewer = await connect('viewer', broker.passwords.viewer);
    try {
      const toPipeline: string[] = [];
      const toViewer: string[] = [];
      pipeline.on('message', (t, m) => toPipeline.push(`${t}=${m.toString()}`));
      viewer.on('message', (t, m) => toViewer.push(`${t}=${m.toString()}`));
      await pipeline.subscribeAsync('beats/+/feedback', { qos: 1 });
      await viewer.subscribeAsync('beats/#', { qos: 1 });

      await viewer.publishAsync('beats/dock/feedback', 'from-viewer', { qos: 1 });
      await viewer.publishAsync('beats/dock/person', '99', { qos: 1 });
      await pipeline.publishAsync('beats/dock/person', '2', { qos: 1 });
      await operator.publishAsync('beats/dock/feedback', 'from-operator', { qos: 1 });

      await waitFor(() => toPipeline.includes('beats/dock/feedback=from-operator'), 5000, "the operator's feedback at the pipeline");
      await waitFor(() => toViewer.includes('beats/dock/person=2'), 5000, "the pipeline's count at the viewer");
      // Mosquitto drops unauthorised publishes silently (MQTT 3.1.1): give them the same time to show up.
      await sleep(300);
      expect(toPipeline).not.toContain('beats/dock/feedback=from-viewer');
      expect(toViewer).not.toContain('beats/dock/feedback=from-viewer');
      expect(toViewer).not.toContain('beats/dock/person=99');
    } finally {
      await Promise.all([pipeline.endAsync(), operator.endAsync(), viewer.endAsync()]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Scripts

describe('deploy/make-dev-certs.sh and make-mqtt-users.sh', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'beats-certs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes a CA, a server certificate for the broker names and a client certificate; a second run keeps the CA', async () => {
    const out = path.join(dir, 'certs');
    await run('bash', [path.join(deploy, 'make-dev-certs.sh'), out, 'broker.site1.example', '192.0.2.7']);
    await run('openssl', ['verify', '-CAfile', path.join(out, 'ca.crt'), path.join(out, 'server.crt'), path.join(out, 'client.crt')]);
    const { stdout: san } = await run('openssl', ['x509', '-in', path.join(out, 'server.crt'), '-noout', '-ext', 'subjectAltName,extendedKeyUsage']);
    for (const name of ['DNS:localhost', 'DNS:mosquitto', 'IP Address:127.0.0.1', 'DNS:broker.site1.example', 'IP Address:192.0.2.7', 'TLS Web Server Authentication']) expect(san).toContain(name);
    const { stdout: client } = await run('openssl', ['x509', '-in', path.join(out, 'client.crt'), '-noout', '-ext', 'extendedKeyUsage']);
    expect(client).toContain('TLS Web Client Authentication');
    const ca = await readFile(path.join(out, 'ca.crt'), 'utf8');
    const server = await readFile(path.join(out, 'server.crt'), 'utf8');
    await run('bash', [path.join(deploy, 'make-dev-certs.sh'), out]);
    expect(await readFile(path.join(out, 'ca.crt'), 'utf8')).toBe(ca);
    expect(await readFile(path.join(out, 'server.crt'), 'utf8')).not.toBe(server);
  });

  it.skipIf(!mosquittoPath)('make-mqtt-users.sh hashes the three accounts and keeps passwords already in .env', async () => {
    const target = path.join(dir, 'users');
    await run('bash', [path.join(deploy, 'make-mqtt-users.sh'), target], { env: { ...process.env, MQTT_PASSWORD: 'given-by-me' } });
    const passwd = await readFile(path.join(target, 'mosquitto', 'passwd'), 'utf8');
    expect(passwd.split('\n').filter(Boolean).map((l) => l.split(':')[0])).toEqual(['beats', 'operator', 'viewer']);
    expect(passwd).not.toContain('given-by-me');
    expect(passwd).toMatch(/^beats:\$[67]\$/m);
    const env1 = await readFile(path.join(target, '.env'), 'utf8');
    expect(env1).toContain('MQTT_PASSWORD=given-by-me\n');
    const operator = /OPERATOR_PASSWORD=(\S+)/.exec(env1)?.[1];
    expect(operator).toMatch(/^[A-Za-z0-9]{20,}$/);
    await run('bash', [path.join(deploy, 'make-mqtt-users.sh'), target], { env: { ...process.env, MQTT_PASSWORD: '' } });
    const env2 = await readFile(path.join(target, '.env'), 'utf8');
    expect(env2).toContain('MQTT_PASSWORD=given-by-me\n');
    expect(env2).toContain(`OPERATOR_PASSWORD=${operator}\n`);
  });
});
