/**
 * For test/versions.test.ts: appends head versions to a store in a loop, as fast as it can, until
 * killed. Each head is filled with its iteration number k (also its streamTime), so a reader can
 * tell a whole version from a torn one. Prints "k version" once each append has returned.
 *
 *   node --import tsx test/helpers/version-writer.ts STATE_DIR
 */
import { VersionStore } from '../../src/adapt/versions.js';
import { bigHead } from './version-heads.js';

const stateDir = process.argv[2]!;
const store = await VersionStore.open({ stateDir, camera: 'cam', base: bigHead(0), keep: 1000 });
for (let k = 1; ; k++) {
  const v = await store.append({ head: bigHead(k), streamTime: k });
  process.stdout.write(`${k} ${v.version}\n`);
}
