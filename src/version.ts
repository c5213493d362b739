/**
 * The package's name and version, read once from package.json (one folder above this module's, in
 * the sources as in a compiled tree): `beats --version`, and the origin Home Assistant shows.
 */
import { readFileSync } from 'node:fs';

interface PackageJson {
  name: string;
  version: string;
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as PackageJson;

export const packageName: string = pkg.name;
export const packageVersion: string = pkg.version;
