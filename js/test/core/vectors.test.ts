// Replays tests/vectors/pakr-v2.json value by value (replay.ts): the same deterministic random
// stream drives registration and recovery through the TypeScript core, and every derived value
// must equal the Python SDK's bytes. HPKE ciphertexts (sealed_*) are random: they are opened
// with the recorded keys and info, and TypeScript's own sealing must open too.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Check, replayCase, replayLabels } from "./replay.js";
import { hex, vectors } from "./helpers.js";

const file = vectors("pakr-v2.json");
let valuesChecked = 0;
const check: Check = {
  eq(actual, expected, what) {
    assert.equal(hex(actual), expected, what);
    valuesChecked++;
  },
  ok(condition, what) {
    assert.ok(condition, what);
  },
};

describe("pakr-v2.json", () => {
  it("labels match", () => replayLabels(file.labels, check));
  for (const c of file.cases) it(c.name, () => replayCase(c, check));
  after(() => {
    // Per case: node ids, 13 registration values, 11 per node, 5 + 7 per recovering node, 2.
    assert.equal(valuesChecked, 260, `${valuesChecked} values checked`);
  });
});
