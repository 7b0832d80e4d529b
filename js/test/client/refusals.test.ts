import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ClusterUnavailable,
  Conflict,
  ErrorKind,
  InvalidAuth,
  MalformedMessage,
  NodeRefusal,
  NodeUnreachable,
  NotRegistered,
  PakrError,
  ProtocolError,
  RateLimited,
} from "../../src/core/errors.js";
import { nodeRef, type NodeRef } from "../../src/core/messages.js";
import { classify, reason, stepFailure } from "../../src/client/refusals.js";

const n1 = nodeRef(new Uint8Array(16).fill(1), 1);
const n2 = nodeRef(new Uint8Array(16).fill(2), 2);

describe("refusals", () => {
  it("maps each kind like the Python SDK", () => {
    assert.equal(classify(n1, new NodeUnreachable("x")), null);
    assert.ok(classify(n1, new NodeRefusal(ErrorKind.INVALID_AUTH, "bad")) instanceof InvalidAuth);
    assert.ok(classify(n1, new NodeRefusal(ErrorKind.NOT_REGISTERED, "no")) instanceof NotRegistered);
    assert.equal(classify(n1, new NodeRefusal(ErrorKind.LOCKED, "locked")), null);
    assert.equal(classify(n1, new NodeRefusal(ErrorKind.NO_GUESSES, "none")), null);
    const limited = classify(n1, new NodeRefusal(ErrorKind.RATE_LIMITED, "slow", { retryAfter: 3 }));
    assert.ok(limited instanceof RateLimited && limited.retryAfter === 3);
    assert.ok(classify(n1, new NodeRefusal(ErrorKind.STALE_ATTEMPT, "x")) instanceof Conflict);
    const bad = classify(n1, new NodeRefusal(ErrorKind.BAD_UNLOCK_TAG, "x"));
    assert.ok(bad instanceof ProtocolError && bad.nodes[0] === n1.name);
    assert.ok(classify(n1, new MalformedMessage("short")) instanceof ProtocolError);
  });

  it("gives short reasons a person can act on", () => {
    assert.equal(reason(new NodeUnreachable("unavailable: connect ECONNREFUSED 127.0.0.1:1")), "connection refused (is the node running?)");
    assert.equal(reason(new NodeUnreachable("deadline_exceeded")), "no answer in time");
  });

  it("names every failed node in ClusterUnavailable when nothing is more actionable", () => {
    const errors = new Map<NodeRef, PakrError>([
      [n1, new NodeUnreachable("connection refused")],
      [n2, new NodeRefusal(ErrorKind.LOCKED, "locked")],
    ]);
    const failure = stepFailure("recover1", errors, 1, 3);
    assert.ok(failure instanceof ClusterUnavailable);
    assert.equal(failure.answered, 1);
    assert.deepEqual(Object.keys(failure.reasons).sort(), [n1.name, n2.name].sort());
  });
});
