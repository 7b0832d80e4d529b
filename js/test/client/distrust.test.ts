import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nodeRef } from "../../src/core/messages.js";
import { Distrust } from "../../src/client/distrust.js";

describe("Distrust", () => {
  it("remembers set-aside nodes until the ttl passes", () => {
    let now = 100;
    const distrust = new Distrust(10, () => now);
    const a = nodeRef(new Uint8Array(16).fill(1), 1);
    const b = nodeRef(new Uint8Array(16).fill(2), 2);
    distrust.remember([a]);
    now = 105;
    distrust.remember([b]);
    assert.deepEqual([...distrust.current()], [a, b]);
    now = 110;
    assert.deepEqual([...distrust.current()], [b]);
    now = 116;
    assert.equal(distrust.current().size, 0);
  });
});
