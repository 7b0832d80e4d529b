// One class per error of the Python SDK, same names and same hierarchy: the Python sources'
// `class X(Y)` lines are the reference, so a new Python error without a TypeScript twin fails here.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as errors from "../../src/core/errors.js";
import { ExitCode, exitCodeFor } from "../../src/core/exitcodes.js";
import * as recover from "../../src/core/recover.js";
import { REPO } from "./helpers.js";

const SOURCES = ["proto/errors.py", "proto/recover.py"];
const ours: Record<string, unknown> = { ...errors, ...recover };

function pythonErrors(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of SOURCES) {
    for (const match of readFileSync(join(REPO, file), "utf8").matchAll(/^class (\w+)\((\w+)\):/gm)) {
      found.set(match[1]!, match[2]!);
    }
  }
  return found;
}

describe("error hierarchy", () => {
  it("every Python error class has a TypeScript twin with the same base", () => {
    const python = pythonErrors();
    const isError = (name: string): boolean => name === "PakrError" || (python.has(name) && isError(python.get(name)!));
    let n = 0;
    for (const [name, base] of python) {
      if (!isError(name)) continue;
      const cls = ours[name] as (new (...args: never[]) => Error) | undefined;
      assert.ok(typeof cls === "function", `${name} is missing from the TypeScript core`);
      if (name !== "PakrError") {
        assert.equal(Object.getPrototypeOf(cls).name, base, `${name} must extend ${base}`);
      }
      n++;
    }
    assert.ok(n >= 18, `${n} error classes`);
  });

  it("messages, fields and names", () => {
    const e = new errors.InvalidPassword(3);
    assert.equal(e.message, "invalid password: 3 guess(es) remaining");
    assert.equal(e.name, "InvalidPassword");
    assert.ok(e instanceof errors.PakrError && e instanceof Error);
    const locked = new errors.LockedOut();
    assert.ok(locked instanceof errors.InvalidPassword);
    assert.equal(locked.guessesRemaining, 0);
    const cu = new errors.ClusterUnavailable({ node2: "timeout", node1: "connection refused", node3: "timeout" });
    assert.equal(cu.message, "cluster unavailable: too few nodes answered (node1: connection refused; node2, node3: timeout)");
    assert.deepEqual(new errors.ProtocolError([], "x").message, "protocol error from unknown node: x");
    assert.equal(new errors.RateLimited(2).message, "rate limited: retry after 2.0 s");
  });

  it("most actionable first", () => {
    const list = [new errors.ClusterUnavailable({}), new errors.InvalidAuth("a"), new errors.NotRegistered(), new errors.InvalidAuth("b")];
    assert.ok(errors.mostActionable(list) instanceof errors.NotRegistered);
    assert.equal(errors.mostActionable([new errors.InvalidAuth("a"), new errors.InvalidAuth("b")]).message, "a");
    assert.throws(() => errors.mostActionable([]), RangeError);
  });

  it("exit codes", () => {
    assert.equal(exitCodeFor(new errors.LockedOut()), ExitCode.LOCKED_OUT);
    assert.equal(exitCodeFor(new errors.InvalidPassword(1)), ExitCode.INVALID_PASSWORD);
    assert.equal(exitCodeFor(new errors.Conflict("c")), ExitCode.UNAVAILABLE);
    assert.equal(exitCodeFor(new errors.WeakParameters("w")), ExitCode.PROTOCOL);
    assert.equal(exitCodeFor(new errors.AlreadyRegistered("r")), ExitCode.USAGE);
    assert.equal(exitCodeFor(new errors.MalformedMessage("m")), ExitCode.FAILED);
  });
});
