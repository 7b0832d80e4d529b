// Wire decoding: every reply field is validated (MalformedMessage naming it), garbage bytes
// never raise anything else, and the conversions round-trip. Plus the stubs' drift check.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import * as pb from "../../src/gen/node_pb.js";
import { ErrorKind, MalformedMessage, NodeRefusal } from "../../src/core/errors.js";
import { Element, Scalar } from "../../src/core/group.js";
import { HpkePrivateKey } from "../../src/core/hpke.js";
import { userStatus } from "../../src/core/messages.js";
import * as oprf from "../../src/core/oprf.js";
import * as wire from "../../src/core/wire.js";
import { hex } from "./helpers.js";

const JS = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const G = Element.generator();
const validReply = () =>
  create(pb.Recover2ResponseSchema, {
    evaluatedElement: G.encoded,
    proof: new Uint8Array(64),
    oprfPublicShare: Element.baseMult(Scalar.fromInt(2)).encoded,
    oprfKeySignature: new Uint8Array(64),
    verifyingKey: new Uint8Array(32),
    commitment: new Uint8Array(32),
    guessesRemaining: 1000,
    nonce: new Uint8Array(16),
    maxGuesses: 10,
  });

function onlyMalformed(f: () => unknown): void {
  try {
    f();
  } catch (error) {
    if (!(error instanceof MalformedMessage)) throw error;
  }
}

describe("wire", () => {
  it("a Recover2 reply decodes; counts are capped at the protocol limit", () => {
    const reply = wire.recover2ReplyFromPb(validReply());
    assert.equal(reply.guessesRemaining, 100);
    assert.equal(hex(reply.evaluatedElement.encoded), hex(G.encoded));
    assert.equal(hex(wire.recover2ReplyToPb(reply).proof), "00".repeat(64));
  });

  it("each bad Recover2 reply field is named", () => {
    const top = Uint8Array.from(G.encoded);
    top[31]! |= 0x80;
    const cases: [keyof pb.Recover2Response, unknown, RegExp][] = [
      ["evaluatedElement", new Uint8Array(32), /evaluated_element: group element is the identity/],
      ["evaluatedElement", top, /evaluated_element: non-canonical/],
      ["oprfPublicShare", new Uint8Array(31), /oprf_public_share must be 32 bytes/],
      ["proof", new Uint8Array(64).fill(0xff), /not canonical/],
      ["proof", new Uint8Array(63), /proof must be 64 bytes/],
      ["oprfKeySignature", new Uint8Array(63), /oprf_key_signature must be 64 bytes/],
      ["verifyingKey", new Uint8Array(0), /verifying_key must be 32 bytes/],
      ["commitment", new Uint8Array(33), /commitment must be 32 bytes/],
      ["nonce", new Uint8Array(15), /nonce must be 16 bytes/],
      ["maxGuesses", 0, /max_guesses must be 1..100, got 0/],
      ["maxGuesses", 101, /max_guesses must be 1..100, got 101/],
    ];
    for (const [field, value, pattern] of cases) {
      const msg = validReply();
      (msg as unknown as Record<string, unknown>)[field] = value;
      assert.throws(() => wire.recover2ReplyFromPb(msg), (e: unknown) => e instanceof MalformedMessage && pattern.test((e as Error).message), String(field));
    }
  });

  it("statuses: epochs, Argon2 parameters and the reset nonce", () => {
    const v = new Uint8Array(16).fill(1);
    const good = create(pb.VersionInfoSchema, { version: v, epoch: 2n ** 64n - 1n, argon2: { memoryKib: 19456, iterations: 2, parallelism: 1 }, guessesRemaining: 3, maxGuesses: 10 });
    const status = wire.statusFromPb(create(pb.UserStatusSchema, { committed: good, tombstoneEpoch: 7n }));
    assert.equal(status.committed!.epoch, 2n ** 64n - 1n);
    assert.equal(status.pending, null);
    assert.throws(() => wire.versionInfoFromPb({ ...good, epoch: 0n }), /epoch must be 1..2\^64-1/);
    assert.throws(() => wire.versionInfoFromPb({ ...good, argon2: undefined }), /argon2 parameters must all be positive/);
    assert.throws(() => wire.versionInfoFromPb({ ...good, version: new Uint8Array(15) }), /version must be 16 bytes/);
    const r1 = (nonce: Uint8Array) => wire.recover1StatusFromPb(create(pb.Recover1ResponseSchema, { status: create(pb.UserStatusSchema), resetNonce: nonce }));
    assert.equal(r1(new Uint8Array(40)).resetNonce.length, 40);
    assert.equal(r1(new Uint8Array(39)).resetNonce.length, 0);
    assert.deepEqual(wire.statusFromPb(undefined), userStatus());
  });

  it("error details and audit rows", () => {
    const detail = wire.errorDetailToPb(new NodeRefusal(ErrorKind.NO_GUESSES, "no guesses", { guessesRemaining: 0 }));
    const back = wire.errorDetailFromBytes(toBinary(pb.ErrorDetailSchema, detail));
    assert.equal(back.kind, ErrorKind.NO_GUESSES);
    assert.equal(back.guessesRemaining, 0);
    assert.equal(back.retryAfter, null);
    const unknown = wire.errorDetailFromPb(create(pb.ErrorDetailSchema, { kind: 99 as pb.ErrorKind, message: "x".repeat(900) }));
    assert.equal(unknown.kind, ErrorKind.UNSPECIFIED);
    assert.equal(unknown.message.length, 500);
    assert.throws(() => wire.errorDetailFromBytes(Uint8Array.of(0xff, 0xff)), MalformedMessage);
    const entry = (id: bigint, userId = "u") => create(pb.AuditEntrySchema, { id, tenant: "t", userId, op: "recover", outcome: "ok" });
    assert.equal(wire.auditRowsFromPb(create(pb.ReadAuditResponseSchema, { entries: [entry(1n), entry(2n)] })).length, 2);
    assert.throws(() => wire.auditRowsFromPb(create(pb.ReadAuditResponseSchema, { entries: [entry(2n), entry(2n)] })), /increasing id/);
    assert.throws(() => wire.auditRowsFromPb(create(pb.ReadAuditResponseSchema, { entries: [entry(1n, "a\u0000b")] })), /control characters/);
  });

  it("a Register2 seals to the node key and opens there; Recover3 replies open with the reply seed", async () => {
    const nodeKey = await HpkePrivateKey.fromSeed(new Uint8Array(32).fill(5));
    const user = { tenant: "t", userId: "u" };
    const nodeId = new Uint8Array(16).fill(3);
    const k = Scalar.fromInt(11);
    const req = {
      version: new Uint8Array(16).fill(1),
      epoch: 9n,
      expected: null,
      oprfKeyShare: k,
      oprfPublicShare: Element.baseMult(k),
      oprfKeySignature: new Uint8Array(64),
      verifyingKey: new Uint8Array(32),
      commitment: new Uint8Array(32),
      unlockTag: new Uint8Array(32).fill(7),
      secretShare: Scalar.fromInt(12),
      encryptedSecret: new Uint8Array(145).fill(8),
      secretCommitment: new Uint8Array(32),
      maxGuesses: 10,
      argon2: { memoryKib: 19456, iterations: 2, parallelism: 1 },
    };
    const msg = await wire.register2ToPb(wire.headerToPb(new Uint8Array(16), user), req, { nodeId, nodeKey: nodeKey.public });
    assert.equal(msg.expected.length, 0);
    const back = await wire.register2FromPb(msg, { user, nodeId, nodeKey });
    assert.ok(back.oprfKeyShare.equals(k) && back.secretShare.equals(req.secretShare));
    assert.equal(hex(back.unlockTag), hex(req.unlockTag));
    await assert.rejects(wire.register2FromPb(msg, { user: { tenant: "t", userId: "v" }, nodeId, nodeKey }), /sealed_shares does not decrypt/);
    const reply = await HpkePrivateKey.fromSeed(new Uint8Array(32).fill(6));
    const r3 = { version: req.version, attemptId: new Uint8Array(16), unlockProof: new Uint8Array(32), replyKey: reply.public.encoded, replySeed: reply.seed };
    const sealed = await wire.recover3ReplyToPb({ secretShare: req.secretShare, encryptedSecret: req.encryptedSecret, secretCommitment: req.secretCommitment }, { user, nodeId, request: wire.recover3FromPb(wire.recover3ToPb(wire.headerToPb(new Uint8Array(16), user), r3)) });
    const opened = await wire.recover3ReplyFromPb(sealed, { user, nodeId, request: r3 });
    assert.ok(opened.secretShare.equals(req.secretShare));
    assert.equal(hex(wire.recover2ToPb(wire.headerToPb(new Uint8Array(16), user), { version: req.version, attemptId: r3.attemptId, blindedElement: G }).blindedElement), hex(G.encoded));
    assert.equal(oprf.Mode.VOPRF, 1);
  });

  it("headers: protocol version and text rules", () => {
    const header = wire.headerToPb(new Uint8Array(16), { tenant: "t", userId: "u" });
    assert.equal(wire.headerFromPb(header).user.userId, "u");
    assert.throws(() => wire.headerFromPb({ ...header, protocolVersion: 1 }), (e: unknown) => e instanceof NodeRefusal && e.kind === ErrorKind.UPGRADE_REQUIRED);
    assert.throws(() => wire.headerFromPb({ ...header, userId: "x".repeat(129) }), /1..128 UTF-8 bytes, got 129/);
    assert.throws(() => wire.headerFromPb({ ...header, tenant: "" }), /header.tenant must be 1..64/);
  });

  it("garbage bytes raise only MalformedMessage", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        onlyMalformed(() => wire.recover2ReplyFromPb(wire.parse(pb.Recover2ResponseSchema, data)));
        onlyMalformed(() => wire.statusFromPb(wire.parse(pb.UserStatusSchema, data)));
        onlyMalformed(() => wire.recover1StatusFromPb(wire.parse(pb.Recover1ResponseSchema, data)));
        onlyMalformed(() => wire.auditRowsFromPb(wire.parse(pb.ReadAuditResponseSchema, data)));
        onlyMalformed(() => wire.errorDetailFromBytes(data));
      }),
      { numRuns: 1000 },
    );
    assert.throws(() => wire.parse(pb.Recover2ResponseSchema, new Uint8Array(wire.MAX_MESSAGE_BYTES + 1)), /larger than/);
  });
});

describe("generated stubs", () => {
  it("js/src/gen matches proto/pakr/v1 (run `npm run gen` after changing the schema)", () => {
    const out = execFileSync(process.execPath, [join(JS, "scripts", "gen.mjs"), "--check"], { encoding: "utf8" });
    assert.match(out, /matches/);
  });
});
