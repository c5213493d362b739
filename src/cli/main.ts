import { Command, InvalidArgumentError } from 'commander';
import { BeatsError, ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { doctorCommand } from './doctor.js';
import { modelsListCommand, modelsPullCommand } from './models.js';
import { runCommand } from './run.js';

const log = logger('beats');

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const program = new Command()
  .name('beats')
  .description('Edge video analytics: cameras → ffmpeg → ONNX detector → MQTT')
  .showHelpAfterError();

program
  .command('run')
  .description('run a pipeline file (Ctrl-C stops it cleanly)')
  .argument('<file>', 'pipeline YAML')
  .option('--max-frames <n>', 'stop each camera after N processed frames', positiveInt)
  .option('--broker <url>', 'MQTT broker URL (overrides mqtt.url; default: embedded broker)')
  .action(async (file: string, opts: { maxFrames?: number; broker?: string }) => {
    await runCommand(file, opts);
  });

const models = program.command('models').description('the model registry');
models
  .command('pull')
  .description('download a model, check its sha256, write it atomically')
  .argument('<name>', 'model name, e.g. yolox-nano')
  .option('--from <file-or-url>', 'take the file from here instead (offline sites)')
  .action(async (name: string, opts: { from?: string }) => {
    await modelsPullCommand(name, opts);
  });
models
  .command('list')
  .description('known models and whether they are pulled')
  .action(async () => {
    await modelsListCommand();
  });

program
  .command('doctor')
  .description('check ffmpeg, onnxruntime providers, TensorFlow.js and the broker')
  .argument('[file]', 'pipeline YAML whose broker to check')
  .option('--broker <url>', 'MQTT broker URL to check')
  .action(async (file: string | undefined, opts: { broker?: string }) => {
    process.exitCode = await doctorCommand(file, opts);
  });

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof ConfigError) {
    log.error(err.message);
    process.exit(2);
  }
  log.error(err instanceof BeatsError ? err.message : `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : errorMessage(err)}`);
  process.exit(1);
}
