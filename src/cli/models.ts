import { SingleBar } from 'cli-progress';
import { listModels, pullModel, pulledModelsDir } from '../model/registry.js';
import { logger } from '../log.js';

const log = logger('models');

export async function modelsPullCommand(name: string, opts: { from?: string }): Promise<void> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const bar = new SingleBar({
    format: `${name} [{bar}] {percentage}% {value}/{total} KiB {eta_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 1000,
    hideCursor: true,
  });
  let started = false;
  try {
    const result = await pullModel(name, {
      from: opts.from,
      signal: controller.signal,
      onProgress: ({ received, total }) => {
        const kib = Math.round(received / 1024);
        if (!started) {
          bar.start(total ? Math.round(total / 1024) : 0, kib);
          started = true;
        } else bar.update(kib);
      },
    });
    bar.stop();
    log.info(`${name}: ${result.bytes} bytes, sha256 ${result.sha256} verified → ${result.file}`);
  } catch (err) {
    if (started) bar.stop();
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function modelsListCommand(): Promise<void> {
  const rows = await listModels();
  process.stdout.write(`models directory: ${pulledModelsDir()}\n`);
  for (const m of rows) {
    const where = m.problem ? `REFUSED: ${m.problem}` : m.file ? `${m.origin}: ${m.file}` : `not pulled (npx beats models pull ${m.name})`;
    process.stdout.write(`${m.name.padEnd(14)} ${m.version.padEnd(22)} ${String(m.classes).padStart(3)} classes  ${where}\n`);
  }
  // A damaged model is a failure a script should see.
  if (rows.some((m) => m.problem)) process.exitCode = 1;
}
