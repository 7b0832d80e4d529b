// Fan-out semantics (the Python SDK's pakr.fanout): deadlines, linger, retries of transient
// failures only, hedging of guess-spending steps, cancellation of what still runs.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorKind, NodeRefusal, NodeUnreachable, PakrError } from "../../src/core/errors.js";
import { nodeRef, type NodeRef } from "../../src/core/messages.js";
import { RetryPolicy, fanOut, hedged, sleep, type NodeCall } from "../../src/client/fanout.js";

const nodes = [1, 2, 3, 4, 5].map((i) => nodeRef(new Uint8Array(16).fill(i), i));

type Behaviour = { delay: number; fail?: PakrError; failTimes?: number };

function fake(behaviour: Map<number, Behaviour>): { call: NodeCall<number>; calls: number[]; aborted: number[] } {
  const calls: number[] = [];
  const aborted: number[] = [];
  const failures = new Map<number, number>();
  const call: NodeCall<number> = async (node: NodeRef, _timeout: number, signal: AbortSignal) => {
    calls.push(node.index);
    const b = behaviour.get(node.index) ?? { delay: 0.001 };
    await sleep(b.delay, signal);
    if (signal.aborted) {
      aborted.push(node.index);
      throw new NodeUnreachable("cancelled");
    }
    const failed = failures.get(node.index) ?? 0;
    if (b.fail && failed < (b.failTimes ?? Infinity)) {
      failures.set(node.index, failed + 1);
      throw b.fail;
    }
    return node.index;
  };
  return { call, calls, aborted };
}

describe("fanOut", () => {
  it("returns after need replies plus the linger, cancelling and naming stragglers", async () => {
    const f = fake(new Map([[5, { delay: 2 }]]));
    const started = performance.now();
    const result = await fanOut("step", nodes, f.call, { need: 3, deadline: 5, linger: 0.05 });
    assert.ok(performance.now() - started < 1000);
    assert.equal(result.replies.size, 4);
    const err = result.errors.get(nodes[4]!);
    assert.ok(err instanceof NodeUnreachable);
    assert.match(err.message, /before enough other nodes/);
  });

  it("waitAll waits until the deadline and names the silent node", async () => {
    const f = fake(new Map([[5, { delay: 3 }]]));
    const result = await fanOut("step", nodes, f.call, { need: 3, deadline: 0.3, waitAll: true });
    assert.equal(result.replies.size, 4);
    assert.match(result.errors.get(nodes[4]!)!.message, /within the 0.3 s deadline/);
  });

  it("retries transient failures and never a refusal", async () => {
    const f = fake(
      new Map<number, Behaviour>([
        [1, { delay: 0.001, fail: new NodeUnreachable("unavailable"), failTimes: 1 }],
        [2, { delay: 0.001, fail: new NodeRefusal(ErrorKind.NOT_REGISTERED, "no such user") }],
      ]),
    );
    const result = await fanOut("step", nodes, f.call, {
      need: 5,
      deadline: 2,
      retry: new RetryPolicy({ baseDelay: 0.001 }),
      waitAll: true,
    });
    assert.equal(f.calls.filter((i) => i === 1).length, 2);
    assert.equal(f.calls.filter((i) => i === 2).length, 1);
    assert.ok(result.replies.has(nodes[0]!));
    assert.ok(result.errors.get(nodes[1]!) instanceof NodeRefusal);
  });

  it("without a retry policy a transient failure is final (guess-spending steps)", async () => {
    const f = fake(new Map([[1, { delay: 0.001, fail: new NodeUnreachable("unavailable"), failTimes: 1 }]]));
    const result = await fanOut("recover2", nodes, f.call, { need: 5, deadline: 1, waitAll: true });
    assert.equal(f.calls.filter((i) => i === 1).length, 1);
    assert.ok(result.errors.get(nodes[0]!) instanceof NodeUnreachable);
  });

  it("a bug (not a PakrError) propagates", async () => {
    const call: NodeCall<number> = async () => {
      throw new TypeError("bug");
    };
    await assert.rejects(fanOut("step", nodes, call, { need: 3, deadline: 1 }), TypeError);
  });

  it("failure() picks the most actionable error", async () => {
    const f = fake(
      new Map<number, Behaviour>([
        [1, { delay: 0.001, fail: new NodeUnreachable("connection refused") }],
        [2, { delay: 0.001, fail: new NodeRefusal(ErrorKind.NOT_REGISTERED, "no such user") }],
        [3, { delay: 0.001, fail: new NodeUnreachable("connection refused") }],
      ]),
    );
    const result = await fanOut("step", nodes.slice(0, 3), f.call, { need: 2, deadline: 1 });
    assert.equal(result.failure(2).name, "NotRegistered");
  });
});

describe("hedged", () => {
  it("asks only need nodes when they answer", async () => {
    const f = fake(new Map());
    const result = await hedged("recover2", nodes, f.call, { need: 3, deadline: 2, hedgeAfter: 0.5 });
    assert.deepEqual([...f.calls].sort(), [1, 2, 3]);
    assert.equal(result.replies.size, 3);
  });

  it("replaces a failed node with the next candidate, and never retries it", async () => {
    const f = fake(new Map([[2, { delay: 0.001, fail: new NodeUnreachable("unavailable") }]]));
    const result = await hedged("recover2", nodes, f.call, { need: 3, deadline: 2, hedgeAfter: 0.5 });
    assert.deepEqual([...f.calls].sort(), [1, 2, 3, 4]);
    assert.equal(result.replies.size, 3);
  });

  it("brings in a spare after hedgeAfter when a node stalls, and cancels the straggler", async () => {
    const f = fake(new Map([[1, { delay: 3 }]]));
    const started = performance.now();
    const result = await hedged("recover2", nodes, f.call, { need: 3, deadline: 5, hedgeAfter: 0.1 });
    assert.ok(performance.now() - started < 1500);
    assert.deepEqual([...f.calls].sort(), [1, 2, 3, 4]);
    assert.equal(result.replies.size, 3);
    assert.ok(result.errors.get(nodes[0]!) instanceof NodeUnreachable);
  });
});
