// Runtime shapes for JSON messages, with the TypeScript type inferred from the same value: one
// declaration is both the type the code is checked against and the check a received message
// must pass. Used by the admin protocol (admin.ts); small on purpose (no dependency).
//
// A check returns the value it accepted (objects are copied with unknown fields kept, so a newer
// peer's additions pass through untouched) or throws a ShapeError naming the first wrong field
// by its path, e.g. `"upstream.reachable" must be true, false or null`.

export class ShapeError extends Error {
  constructor(readonly path: string, readonly expected: string) {
    super(`${path ? `"${path}"` : 'the message'} must be ${expected}`);
    this.name = 'ShapeError';
  }
}

export interface Shape<T> {
  /** what a value must be, in words, for error messages ("a user name", "true or false") */
  readonly expected: string;
  check(v: unknown, path: string): T;
}

/** A field that may be absent; a null counts as absent too (requests written by scripts). */
export interface OptionalShape<T> extends Shape<T | undefined> { readonly optional: true }

export type Infer<S> = S extends Shape<infer T> ? T : never;

type FieldShapes = Record<string, Shape<unknown>>;
type RequiredKeys<F extends FieldShapes> = { [K in keyof F]: F[K] extends OptionalShape<unknown> ? never : K }[keyof F];
type OptionalKeys<F extends FieldShapes> = { [K in keyof F]: F[K] extends OptionalShape<unknown> ? K : never }[keyof F];
type Flat<T> = { [K in keyof T]: T[K] };
export type ObjectOf<F extends FieldShapes> = Flat<
  { [K in RequiredKeys<F>]: Infer<F[K]> } & { [K in OptionalKeys<F>]?: Exclude<Infer<F[K]>, undefined> }
>;

const at = (path: string, key: string | number): string =>
  typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;

function shape<T>(expected: string, ok: (v: unknown) => v is T): Shape<T> {
  return {
    expected,
    check(v, path) {
      if (!ok(v)) throw new ShapeError(path, expected);
      return v;
    },
  };
}

export const string = (): Shape<string> => shape('a string', (v): v is string => typeof v === 'string');
export const boolean = (): Shape<boolean> => shape('true or false', (v): v is boolean => typeof v === 'boolean');
/** Any finite number (times, counts, milliseconds). */
export const number = (): Shape<number> => shape('a number', (v): v is number => typeof v === 'number' && Number.isFinite(v));

/** A string 1..max characters long, optionally also matching `ok`. */
export function text(expected: string, max: number, ok: (s: string) => boolean = () => true): Shape<string> {
  return shape(expected, (v): v is string => typeof v === 'string' && v.length > 0 && v.length <= max && ok(v));
}

/** An integer in [min, max]. */
export function integer(expected: string, min: number, max: number): Shape<number> {
  return shape(expected, (v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max);
}

export function literal<const L extends string | number | boolean>(...values: L[]): Shape<L> {
  const expected = values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;
  return shape(expected, (v): v is L => (values as unknown[]).includes(v));
}

export function nullable<T>(s: Shape<T>): Shape<T | null> {
  return {
    expected: `${s.expected} or null`,
    check: (v, path) => (v === null ? null : s.check(v, path)),
  };
}

export function optional<T>(s: Shape<T>): OptionalShape<T> {
  return {
    optional: true,
    expected: s.expected,
    check: (v, path) => (v === undefined || v === null ? undefined : s.check(v, path)),
  };
}

/** The first alternative that accepts the value; the message lists what each expects. */
export function either<A, B>(a: Shape<A>, b: Shape<B>, expected = `${a.expected} or ${b.expected}`): Shape<A | B> {
  return {
    expected,
    check(v, path) {
      try { return a.check(v, path); } catch (e) { if (!(e instanceof ShapeError)) throw e; }
      try { return b.check(v, path); } catch (e) { if (!(e instanceof ShapeError)) throw e; }
      throw new ShapeError(path, expected);
    },
  };
}

export function array<T>(item: Shape<T>, opts: { nonEmpty?: boolean; expected?: string } = {}): Shape<T[]> {
  const expected = opts.expected ?? `a list of ${item.expected}`;
  return {
    expected,
    check(v, path) {
      if (!Array.isArray(v) || (opts.nonEmpty && v.length === 0)) throw new ShapeError(path, expected);
      return v.map((x, i) => item.check(x, at(path, i)));
    },
  };
}

/** An object with string keys and values of one shape (counters by name, histogram buckets). */
export function record<T>(value: Shape<T>): Shape<Record<string, T>> {
  const expected = `an object of ${value.expected}`;
  return {
    expected,
    check(v, path) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ShapeError(path, expected);
      const out: Record<string, T> = {};
      // defineProperty, not assignment: a "__proto__" key stays a plain key instead of
      // re-parenting the result.
      for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: value.check(x, at(path, k)), enumerable: true, writable: true, configurable: true });
      return out;
    },
  };
}

export interface ObjectShape<F extends FieldShapes> extends Shape<ObjectOf<F>> { readonly fields: F }

/** An object with these fields; fields it does not name are kept as they are. */
export function object<F extends FieldShapes>(fields: F): ObjectShape<F> {
  return {
    fields,
    expected: 'an object',
    check(v, path) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ShapeError(path, 'an object');
      const out: Record<string, unknown> = { ...v };
      for (const [k, s] of Object.entries(fields)) {
        const got = s.check((v as Record<string, unknown>)[k], at(path, k));
        if (got === undefined) delete out[k]; else out[k] = got;
      }
      return out as ObjectOf<F>;
    },
  };
}

type OneOfResult<F extends FieldShapes> = { [K in keyof F]: { [P in K]: Infer<F[P]> } }[keyof F];

/**
 * Exactly one of these fields is given (not absent, not null): `{id} | {user}`. `none` is the
 * message when zero or several are given, which names them all. The other fields are kept.
 */
export function exactlyOne<F extends FieldShapes>(fields: F, none: string): Shape<OneOfResult<F>> {
  return {
    expected: none,
    check(v, path) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ShapeError(path, 'an object');
      const obj = v as Record<string, unknown>;
      const given = Object.keys(fields).filter((k) => obj[k] !== undefined && obj[k] !== null);
      if (given.length !== 1) throw new OneOfError(path, none);
      const k = given[0]!;
      const out: Record<string, unknown> = { ...obj, [k]: fields[k]!.check(obj[k], at(path, k)) };
      // A null alternative counts as not given: drop it, so `'user' in request` means given.
      for (const other of Object.keys(fields)) if (other !== k) delete out[other];
      return out as OneOfResult<F>;
    },
  };
}

/** "give exactly one of ..." reads as a sentence of its own, not as `"x" must be ...`. */
export class OneOfError extends ShapeError {
  constructor(path: string, message: string) {
    super(path, message);
    this.message = message;
  }
}
