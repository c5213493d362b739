/**
 * Secrets out of text that is logged or shown: the password of every `scheme://user:password@host`
 * (one with `@`, `/`, `?` or `#` in it included) and the values of credential parameters in a URL's
 * query (`?user=admin&pwd=...`, `password=`, `token=`, `key=`, ...). One function for every URL,
 * ffmpeg command line and error message that reaches a log; the logger applies it to each record too.
 */

/** A URL in running text: a scheme, `://`, then everything up to whitespace or a quote. */
const URL_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s"'<>`]+)/gi;

/** Query parameters whose value is a credential or names the account it is for. */
const SECRET_PARAM = /^(user|username|usr|login|u|p)$|pass|pwd|token|secret|key|auth|sig|credential|session/i;

const MASK = '***';

/** `text` with every URL's credentials masked; text without a URL comes back unchanged. */
export function redactSecrets(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_IN_TEXT, (_match, scheme: string, rest: string) => scheme + redactRest(rest));
}

/** Alias for a single URL (a camera's, a broker's, a download's). */
export const redactUrl = redactSecrets;

/** What follows `scheme://`: userinfo masked, then credential parameters of the query masked. */
function redactRest(rest: string): string {
  const at = userinfoEnd(rest);
  let head = '';
  let tail = rest;
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : '';
    head = (user && !/[/?#]/.test(user) ? `${user}:${MASK}` : MASK) + '@';
    tail = rest.slice(at + 1);
  }
  return head + redactQuery(tail);
}

/**
 * Where the userinfo ends (its `@`), or -1. The authority is what comes before the first `/`, `?` or
 * `#`; its last `@` ends the userinfo, so a password with `@` in it is masked whole. A password with
 * `/`, `?` or `#` in it (not valid in a URL, but typed) makes the authority look like `user:pa`, a
 * colon followed by no port: then the last `@` that is followed by a host ends the userinfo.
 */
function userinfoEnd(rest: string): number {
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const inAuthority = authority.lastIndexOf('@');
  if (inAuthority >= 0) return inAuthority;
  if (authorityEnd < 0 || !/:(?!\d*$)/.test(authority)) return -1;
  let found = -1;
  const host = /@[a-z0-9.\-_~%[\]]+(?::\d+)?(?=[/?#]|$)/gi;
  for (let m = host.exec(rest); m; m = host.exec(rest)) found = m.index;
  return found;
}

/** `?a=1&pwd=secret#x` → `?a=1&pwd=***#x`. */
function redactQuery(tail: string): string {
  const q = tail.search(/[?#]/);
  if (q < 0) return tail;
  return tail.slice(0, q) + tail.slice(q).replace(/([?&;])([^=&;#]+)=([^&;#]*)/g, (whole, sep: string, name: string, value: string) =>
    SECRET_PARAM.test(decodeName(name)) && value !== '' ? `${sep}${name}=${MASK}` : whole,
  );
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}
