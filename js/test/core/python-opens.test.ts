// The other direction of HPKE byte compatibility: what TypeScript seals, the Python SDK opens
// (pakr.proto.sealed, the code nodes run), and the ML-KEM/X25519 key pair TypeScript derives
// from a seed is the one Python derives. Needs the repository's virtualenv (`make venv`),
// which `make test` always has; run alone without it, the test is skipped and says so.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { toHex } from "../../src/core/bytes.js";
import { Scalar } from "../../src/core/group.js";
import { HpkePrivateKey } from "../../src/core/hpke.js";
import { sealRecover3Reply, sealRegister2Shares } from "../../src/core/sealed.js";
import { REPO } from "./helpers.js";

const PYTHON = join(REPO, ".venv", "bin", "python");
const OPEN = `
import json, sys
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.messages import UserRef
from pakr.proto.sealed import open_recover3_reply, open_register2_shares
d = json.load(sys.stdin)
h = bytes.fromhex
user = UserRef(d["tenant"], d["user_id"])
key = HpkePrivateKey.from_seed(h(d["seed"]))
shares = open_register2_shares(h(d["sealed_shares"]), user=user, node_id=h(d["node_id"]),
    version=h(d["version"]), epoch=d["epoch"], node_key=key)
reply = open_recover3_reply(h(d["sealed_share"]), user=user, node_id=h(d["node_id"]),
    version=h(d["version"]), attempt_id=h(d["attempt_id"]), reply_key=key)
print(json.dumps({
    "public": key.public.encoded.hex(),
    "k": shares.oprf_key_share.encoded.hex(), "tag": shares.unlock_tag.hex(),
    "ct": shares.encrypted_secret.hex(), "s": reply.secret_share.encoded.hex(),
    "commitment": reply.secret_commitment.hex(),
}))
`;

describe("Python opens what TypeScript seals", { skip: existsSync(PYTHON) ? false : "no .venv (run make venv)" }, () => {
  it("Register2 sealed_shares and a Recover3 sealed_share", async () => {
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const key = await HpkePrivateKey.fromSeed(seed);
    const user = { tenant: "wallet", userId: "ユーザー" };
    const nodeId = crypto.getRandomValues(new Uint8Array(16));
    const version = crypto.getRandomValues(new Uint8Array(16));
    const attemptId = crypto.getRandomValues(new Uint8Array(16));
    const epoch = 2n ** 40n;
    const k = Scalar.random();
    const s = Scalar.random();
    const tag = crypto.getRandomValues(new Uint8Array(32));
    const ct = crypto.getRandomValues(new Uint8Array(145));
    const commitment = crypto.getRandomValues(new Uint8Array(32));
    const sealedShares = await sealRegister2Shares(
      { oprfKeyShare: k, secretShare: s, unlockTag: tag, encryptedSecret: ct },
      { user, nodeId, version, epoch, nodeKey: key.public },
    );
    const sealedShare = await sealRecover3Reply(
      { secretShare: s, encryptedSecret: ct, secretCommitment: commitment },
      { user, nodeId, version, attemptId, replyKey: key.public },
    );
    const input = JSON.stringify({
      tenant: user.tenant,
      user_id: user.userId,
      seed: toHex(seed),
      node_id: toHex(nodeId),
      version: toHex(version),
      epoch: Number(epoch),
      attempt_id: toHex(attemptId),
      sealed_shares: toHex(sealedShares),
      sealed_share: toHex(sealedShare),
    });
    const out = JSON.parse(execFileSync(PYTHON, ["-c", OPEN], { input, encoding: "utf8", cwd: REPO, timeout: 60_000 }));
    assert.equal(out.public, toHex(key.public.encoded));
    assert.equal(out.k, toHex(k.encoded));
    assert.equal(out.tag, toHex(tag));
    assert.equal(out.ct, toHex(ct));
    assert.equal(out.s, toHex(s.encoded));
    assert.equal(out.commitment, toHex(commitment));
  });
});
