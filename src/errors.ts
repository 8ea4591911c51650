// Typed errors: each kind carries a stable code and a message an admin can act on.

export class LatchkeyError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A config file is wrong: names the file, the line, the key and the fix. */
export class ConfigError extends LatchkeyError {
  constructor(readonly file: string, readonly line: number, readonly key: string, readonly problem: string) {
    super('E_CONFIG', `${file}${line > 0 ? ':' + line : ''}: ${key ? key + ': ' : ''}${problem}`);
  }
}

/**
 * Every mistake found in one read of a config (src/config/load.ts), so an admin fixes them all in
 * one pass instead of one per run. It is a ConfigError for the first one (file, line, key), and
 * its message has one "FILE:LINE: key: problem" line per mistake.
 */
export class ConfigErrors extends ConfigError {
  constructor(readonly errors: readonly ConfigError[]) {
    const first = errors[0]!;
    super(first.file, first.line, first.key, first.problem);
    this.message = errors.map((e) => e.message).join('\n');
  }
}

/** The single mistakes a ConfigError stands for (one, or each of a ConfigErrors). */
export function configErrorList(e: ConfigError): readonly ConfigError[] {
  return e instanceof ConfigErrors ? e.errors : [e];
}

/**
 * The upstream user service failed (timeout, 5xx, bad JSON, invalid record), or, in token mode,
 * no token could be had from token_url ('auth': the directory serves stale or "unavailable").
 */
export class UpstreamError extends LatchkeyError {
  /**
   * `status`: the HTTP status of a kind 'http' failure. `retryAfterMs`: a 429 or 503 whose
   * Retry-After header asked the client to wait this long (upstream/client.ts clamps it); the
   * directory then sends nothing upstream until then (upstream/backoff.ts).
   */
  constructor(
    readonly kind: 'timeout' | 'connect' | 'http' | 'body' | 'json' | 'invalid' | 'too_large' | 'auth', message: string,
    readonly http: { status?: number; retryAfterMs?: number } = {},
  ) {
    super('E_UPSTREAM', message);
  }
}

/**
 * Bytes that break the wire protocol: a length prefix over the frame limit (the connection
 * is closed, server/connection.ts), a malformed request body (answered BAD_REQUEST on a
 * connection that stays open, server/dispatch.ts), a reply the client cannot decode, or a value
 * a frame cannot carry (a NUL, a string over 65535 bytes) when encoding.
 */
export class ProtocolError extends LatchkeyError {
  constructor(message: string) { super('E_PROTOCOL', message); }
}

/** The cache file could not be used. */
export class CacheError extends LatchkeyError {
  constructor(message: string) { super('E_CACHE', message); }
}

/** Home directory creation found something unsafe and refused. */
export class HomeError extends LatchkeyError {
  constructor(message: string) { super('E_HOME', message); }
}
