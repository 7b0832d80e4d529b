/**
 * Shamir secret sharing over Z_L (the ristretto255 scalar field), and Lagrange interpolation in
 * the exponent (docs/protocol.md §1). Share i is f(x_i) with x_i the node's index (1..255).
 *
 * A bad `split` call is a programming error (`RangeError`); a bad share *set*, which comes
 * from nodes over the wire, is a {@link MalformedMessage}.
 */
import { MalformedMessage } from "./errors.js";
import { Element, Scalar } from "./group.js";

export const MIN_INDEX = 1;
export const MAX_INDEX = 255;

function indexProblem(indices: readonly number[]): string | null {
  const seen = new Set<number>();
  for (const i of indices) {
    if (!Number.isInteger(i)) return "share indices must be integers";
    if (i < MIN_INDEX || i > MAX_INDEX) return `share index ${i} is outside ${MIN_INDEX}..${MAX_INDEX}`;
    if (seen.has(i)) return `share index ${i} appears more than once`;
    seen.add(i);
  }
  return indices.length === 0 ? "no share indices given" : null;
}

/**
 * Share `secret` so that any `threshold` of the shares at `indices` recover it. `rand` draws
 * the t-1 random coefficients (injectable for deterministic vectors).
 */
export function split(
  secret: Scalar,
  threshold: number,
  indices: readonly number[],
  rand: () => Scalar = Scalar.random,
): Map<number, Scalar> {
  const problem = indexProblem(indices);
  if (problem !== null) throw new RangeError(problem);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > indices.length) {
    throw new RangeError(`threshold must be in 1..${indices.length} (the number of shares)`);
  }
  const coefficients = [secret];
  for (let i = 1; i < threshold; i++) coefficients.push(rand());
  const shares = new Map<number, Scalar>();
  for (const index of indices) {
    const x = Scalar.fromInt(index);
    let acc = coefficients[coefficients.length - 1] as Scalar;
    for (let j = coefficients.length - 2; j >= 0; j--) acc = acc.mul(x).add(coefficients[j] as Scalar);
    shares.set(index, acc);
  }
  return shares;
}

/** λ_i for interpolation at 0 over exactly these indices; `MalformedMessage` on a bad list. */
export function lagrangeCoefficients(indices: readonly number[]): Map<number, Scalar> {
  const problem = indexProblem(indices);
  if (problem !== null) throw new MalformedMessage(problem);
  const out = new Map<number, Scalar>();
  for (const i of indices) {
    let numerator = Scalar.fromInt(1);
    let denominator = Scalar.fromInt(1);
    for (const j of indices) {
      if (j === i) continue;
      numerator = numerator.mul(Scalar.fromInt(j));
      denominator = denominator.mul(Scalar.fromInt(j - i));
    }
    out.set(i, numerator.mul(denominator.invert()));
  }
  return out;
}

function checkShareSet(indices: readonly number[], threshold: number): Map<number, Scalar> {
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError("threshold must be an integer >= 1");
  if (indices.length < threshold) {
    throw new MalformedMessage(`too few shares: ${indices.length} given, threshold is ${threshold}`);
  }
  return lagrangeCoefficients(indices);
}

/** f(0) from `shares` (index → share); needs at least `threshold`, uses all given. */
export function reconstruct(shares: ReadonlyMap<number, Scalar>, threshold: number): Scalar {
  const indices = [...shares.keys()];
  const coefficients = checkShareSet(indices, threshold);
  let total = Scalar.fromInt(0);
  for (const i of indices) total = total.add((coefficients.get(i) as Scalar).mul(shares.get(i) as Scalar));
  return total;
}

/** Σ λ_i·E_i: Lagrange at 0 in the exponent; `MalformedMessage` for a bad set or an identity sum. */
export function combineElements(shares: ReadonlyMap<number, Element>, threshold: number): Element {
  const indices = [...shares.keys()];
  const coefficients = checkShareSet(indices, threshold);
  let total: Element | undefined;
  for (const i of indices) {
    const term = (shares.get(i) as Element).mul(coefficients.get(i) as Scalar);
    total = total === undefined ? term : total.add(term);
  }
  return total as Element;
}
