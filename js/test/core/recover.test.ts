// The client-side decisions of recovery, register, reset and heal: committed-first version
// choice and ask order, pending roll-forward, the LockedOut / NotRegistered counting rules,
// lazy verification with fallback naming the culprit, spares, secret-share checks, reset
// targets and fill compare-and-swap decisions. Nodes are simulated from the Register2 requests.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sha256 } from "@noble/hashes/sha2.js";
import { toHex } from "../../src/core/bytes.js";
import {
  ClusterUnavailable,
  InvalidPassword,
  LockedOut,
  NotRegistered,
  ProtocolError,
  WeakParameters,
} from "../../src/core/errors.js";
import { Element } from "../../src/core/group.js";
import * as heal from "../../src/core/heal.js";
import * as kdf from "../../src/core/kdf.js";
import {
  type NodeRef,
  type Recover2Reply,
  type Recover3Reply,
  type UserStatus,
  type VersionInfo,
  nodeRef,
  userStatus,
} from "../../src/core/messages.js";
import * as oprf from "../../src/core/oprf.js";
import { DeterministicRandomness } from "../../src/core/randomness.js";
import {
  PasswordMismatch,
  TooFewValid,
  admitSpares,
  chooseVersion,
  finishRecover2,
  finishRecover3,
  guessesLeft,
  holdsNewer,
  lockoutIsCertain,
  settled,
  startRecover2,
} from "../../src/core/recover.js";
import { EPOCH_JUMP_LIMIT, prepareRegistration, registrationEpoch } from "../../src/core/register.js";
import { resetRequests, resetTargets } from "../../src/core/reset.js";

const USER = { tenant: "acme", userId: "alice" };
const ARGON2 = kdf.DEV_ARGON2;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const rng = new DeterministicRandomness(enc("recover-test"));
const nodes = (n: number): NodeRef[] => Array.from({ length: n }, (_, i) => nodeRef(rng.bytes(16), i + 1));
const info = (version: Uint8Array, fields: Partial<VersionInfo> = {}): VersionInfo => ({
  version,
  epoch: 1n,
  argon2: ARGON2,
  guessesRemaining: 10,
  locked: false,
  maxGuesses: 10,
  ...fields,
});

function cluster(n: number, t: number, password: string, secret: string, maxGuesses = 10) {
  const refs = nodes(n);
  const version = rng.bytes(16);
  const accessKey = sha256(enc(password)); // Argon2id's output stands in: the core takes the key
  const seed = sha256(enc(`seed:${password}`));
  const plan = prepareRegistration({
    user: USER,
    nodes: refs,
    threshold: t,
    version,
    epoch: 1n,
    expected: new Map(),
    accessKey,
    encryptionKeySeed: seed,
    secret: enc(secret),
    argon2: ARGON2,
    maxGuesses,
    rng,
  });
  const req = (node: NodeRef) => plan.requests.get(toHex(node.nodeId))!;
  const answers = new Map<NodeRef, UserStatus>(refs.map((r) => [r, userStatus({ committed: info(version, { maxGuesses }) })]));
  const evaluate = (node: NodeRef, blinded: Element, left = maxGuesses - 1): Recover2Reply => {
    const r = req(node);
    const z = oprf.blindEvaluate(r.oprfKeyShare, blinded);
    return {
      evaluatedElement: z,
      proof: oprf.generateProof(r.oprfKeyShare, Element.generator(), r.oprfPublicShare, [blinded], [z]),
      oprfPublicShare: r.oprfPublicShare,
      oprfKeySignature: r.oprfKeySignature,
      verifyingKey: r.verifyingKey,
      commitment: r.commitment,
      guessesRemaining: left,
      nonce: rng.bytes(16),
      maxGuesses,
    };
  };
  const release = (node: NodeRef): Recover3Reply => ({
    secretShare: req(node).secretShare,
    encryptedSecret: req(node).encryptedSecret,
    secretCommitment: req(node).secretCommitment,
  });
  const attempt = async (pw: string) => {
    const choice = chooseVersion(answers, new Map(), { threshold: t, nodeCount: n, user: USER });
    return startRecover2(USER, choice, sha256(enc(pw)), sha256(enc(`seed:${pw}`)), rng);
  };
  return { refs, version, plan, answers, evaluate, release, attempt };
}

describe("version choice", () => {
  it("asks committed holders first, fewest guesses left first; pending-only last", () => {
    const ns = nodes(5);
    const v = rng.bytes(16);
    const answers = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(v, { guessesRemaining: 9 }) })],
      [ns[1]!, userStatus({ committed: info(v, { guessesRemaining: 4 }) })],
      [ns[2]!, userStatus({ committed: info(v, { guessesRemaining: 7 }) })],
      [ns[3]!, userStatus({ pending: info(v, { guessesRemaining: 1 }) })],
      [ns[4]!, userStatus({ committed: info(v, { guessesRemaining: 0 }) })],
    ]);
    const choice = chooseVersion(answers, new Map(), { threshold: 3, nodeCount: 5, user: USER });
    assert.deepEqual(choice.nodes, [ns[1], ns[2], ns[0], ns[3]]);
    assert.deepEqual(choice.pendingNodes, [ns[3]]);
    assert.deepEqual(choice.cannotServe, [ns[4]]);
    assert.equal(choice.maxGuesses, 10);
    // A distrusted node comes last whatever it claims.
    const d = chooseVersion(answers, new Map(), { threshold: 3, nodeCount: 5, user: USER, distrusted: new Set([ns[1]!]) });
    assert.deepEqual(d.nodes, [ns[2], ns[0], ns[3], ns[1]]);
  });

  it("committed beats a newer pending held by a minority; pending rolls forward when t hold it", () => {
    const ns = nodes(3);
    const old = rng.bytes(16);
    const fresh = rng.bytes(16);
    const minority = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(old), pending: info(fresh, { epoch: 2n }) })],
      [ns[1]!, userStatus({ committed: info(old) })],
      [ns[2]!, userStatus({ committed: info(old) })],
    ]);
    assert.equal(toHex(chooseVersion(minority, new Map(), { threshold: 2, nodeCount: 3 }).version), toHex(old));
    const rolled = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(fresh, { epoch: 2n }) })],
      [ns[1]!, userStatus({ committed: info(old), pending: info(fresh, { epoch: 2n }) })],
      [ns[2]!, userStatus({ committed: info(old), pending: info(fresh, { epoch: 2n }) })],
    ]);
    // Committed on 1 < t, committed old on 2 ≥ t: the old committed version wins (committed first).
    assert.equal(toHex(chooseVersion(rolled, new Map(), { threshold: 2, nodeCount: 3 }).version), toHex(old));
    const pendingOnly = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(fresh, { epoch: 2n }) })],
      [ns[1]!, userStatus({ pending: info(fresh, { epoch: 2n }) })],
      [ns[2]!, userStatus({ pending: info(fresh, { epoch: 2n }) })],
    ]);
    const choice = chooseVersion(pendingOnly, new Map(), { threshold: 2, nodeCount: 3 });
    assert.equal(toHex(choice.version), toHex(fresh));
    assert.deepEqual(choice.pendingNodes, [ns[1], ns[2]]);
  });

  it("NotRegistered only when more than n - t nodes hold nothing, or t newer tombstones", () => {
    const ns = nodes(5);
    const v = rng.bytes(16);
    const some = new Map<NodeRef, UserStatus>(ns.slice(0, 3).map((n) => [n, userStatus()]));
    assert.throws(() => chooseVersion(some, new Map(), { threshold: 3, nodeCount: 5 }), NotRegistered);
    const two = new Map<NodeRef, UserStatus>(ns.slice(0, 2).map((n) => [n, userStatus()]));
    assert.throws(() => chooseVersion(two, new Map([[ns[2]!, "timeout"]]), { threshold: 3, nodeCount: 5 }), ClusterUnavailable);
    const deleted = new Map<NodeRef, UserStatus>(ns.map((n, i) => [n, userStatus({ committed: i < 3 ? info(v) : null, tombstoneEpoch: i < 3 ? 0n : 2n })]));
    assert.equal(chooseVersion(deleted, new Map(), { threshold: 3, nodeCount: 5 }).nodes.length, 3);
    const tomb = new Map<NodeRef, UserStatus>(ns.map((n) => [n, userStatus({ committed: info(v), tombstoneEpoch: 2n })]));
    assert.throws(() => chooseVersion(tomb, new Map(), { threshold: 3, nodeCount: 5 }), /deleted/);
  });

  it("LockedOut only when more than n - t answered nodes cannot serve", () => {
    const ns = nodes(5);
    const v = rng.bytes(16);
    const locked = (k: number) =>
      new Map<NodeRef, UserStatus>(ns.map((n, i) => [n, userStatus({ committed: info(v, i < k ? { locked: true, guessesRemaining: 0 } : {}) })]));
    assert.throws(() => chooseVersion(locked(3), new Map(), { threshold: 3, nodeCount: 5 }), LockedOut);
    // Two locked (= n - t) and a silent third: not certain.
    const uncertain = locked(2);
    uncertain.delete(ns[4]!);
    uncertain.delete(ns[3]!);
    assert.throws(() => chooseVersion(uncertain, new Map([[ns[3]!, "timeout"]]), { threshold: 3, nodeCount: 5 }), (e: unknown) => {
      assert.ok(e instanceof ClusterUnavailable && !(e instanceof InvalidPassword));
      assert.match((e as Error).message, /1 node\(s\) can serve the version, 3 needed/);
      return true;
    });
    assert.ok(lockoutIsCertain(3, { threshold: 3, nodeCount: 5 }));
    assert.ok(!lockoutIsCertain(2, { threshold: 3, nodeCount: 5 }));
  });

  it("nodes that moved on to a newer version are no lockout evidence (a conflict, not LockedOut)", () => {
    const ns = nodes(5);
    const old = rng.bytes(16);
    const fresh = rng.bytes(16);
    // t = 3 hold the old version committed, but two are locked and two moved on to epoch 2.
    const answers = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(old) })],
      [ns[1]!, userStatus({ committed: info(old, { locked: true, guessesRemaining: 0 }) })],
      [ns[2]!, userStatus({ committed: info(old, { locked: true, guessesRemaining: 0 }) })],
      [ns[3]!, userStatus({ committed: info(old), pending: info(fresh, { epoch: 2n }) })],
      [ns[4]!, userStatus({ pending: info(fresh, { epoch: 2n }) })],
    ]);
    // Old committed on 4 ≥ t: chosen; usable: ns[0], ns[3] (< t); unable: ns[1], ns[2], ns[4].
    assert.throws(() => chooseVersion(answers, new Map(), { threshold: 3, nodeCount: 5 }), (e: unknown) => {
      assert.ok(e instanceof ClusterUnavailable, String(e));
      return true;
    });
    assert.ok(holdsNewer(answers.get(ns[4]!)!, 1n) && !holdsNewer(answers.get(ns[1]!)!, 1n));
    // The same counts with a third locked node instead of the moved-on one: certain.
    answers.set(ns[4]!, userStatus({ committed: info(old, { locked: true, guessesRemaining: 0 }) }));
    assert.throws(() => chooseVersion(answers, new Map(), { threshold: 3, nodeCount: 5 }), LockedOut);
  });

  it("Argon2id: disagreement is a ProtocolError, weak agreed parameters WeakParameters", () => {
    const ns = nodes(3);
    const v = rng.bytes(16);
    const other = { memoryKib: 32768, iterations: 3, parallelism: 1 };
    const split = new Map<NodeRef, UserStatus>(ns.map((n, i) => [n, userStatus({ committed: info(v, { argon2: i === 0 ? ARGON2 : i === 1 ? other : { ...other, iterations: 4 } }) })]));
    assert.throws(() => chooseVersion(split, new Map(), { threshold: 2, nodeCount: 3 }), ProtocolError);
    const suspects = new Map<NodeRef, UserStatus>(ns.map((n, i) => [n, userStatus({ committed: info(v, { argon2: i === 0 ? other : ARGON2 }) })]));
    assert.deepEqual(chooseVersion(suspects, new Map(), { threshold: 2, nodeCount: 3 }).suspects, [ns[0]]);
    const weak = new Map<NodeRef, UserStatus>(ns.map((n) => [n, userStatus({ committed: info(v, { argon2: { ...ARGON2, memoryKib: 1024 } }) })]));
    assert.throws(() => chooseVersion(weak, new Map(), { threshold: 2, nodeCount: 3 }), WeakParameters);
  });

  it("settled once t usable committed answers agree", () => {
    const ns = nodes(5);
    const v = rng.bytes(16);
    const a = new Map<NodeRef, UserStatus>([[ns[0]!, userStatus({ committed: info(v) })], [ns[1]!, userStatus({ committed: info(v) })]]);
    assert.ok(!settled(a, { threshold: 3 }));
    a.set(ns[2]!, userStatus({ committed: info(v, { locked: true }) }));
    assert.ok(!settled(a, { threshold: 3 }));
    a.set(ns[3]!, userStatus({ committed: info(v) }));
    assert.ok(settled(a, { threshold: 3 }));
  });
});

describe("recovery rounds", () => {
  it("a matching combination unlocks and the secret comes back", async () => {
    const c = cluster(5, 3, "pw", "the secret");
    const attempt = await c.attempt("pw");
    const replies = new Map(attempt.choice.nodes.slice(0, 3).map((n) => [n, c.evaluate(n, attempt.blindedElement)]));
    const unlocked = finishRecover2(attempt, replies, { threshold: 3 });
    assert.equal(unlocked.setAside.size, 0);
    assert.equal(unlocked.policy.maxGuesses, 10);
    const released = new Map([...unlocked.requests.keys()].map((n) => [n, c.release(n)]));
    assert.equal(new TextDecoder().decode(finishRecover3(unlocked, released, { threshold: 3 })), "the secret");
  });

  it("a wrong password is InvalidPassword with the t-th largest count", async () => {
    const c = cluster(5, 3, "pw", "s", 5);
    const attempt = await c.attempt("not pw");
    const lefts = [4, 2, 3];
    const replies = new Map(attempt.choice.nodes.slice(0, 3).map((n, i) => [n, c.evaluate(n, attempt.blindedElement, lefts[i])]));
    assert.throws(() => finishRecover2(attempt, replies, { threshold: 3 }), (e: unknown) => {
      assert.ok(e instanceof PasswordMismatch && e instanceof InvalidPassword);
      assert.equal((e as PasswordMismatch).guessesRemaining, 2);
      assert.equal((e as PasswordMismatch).setAside.size, 0);
      return true;
    });
    // Advice counts every node that can serve: the two not asked still have 5.
    assert.equal(guessesLeft({ ...attempt.choice, guesses: c.refs.map((n) => [n, 5] as const) }, replies, { threshold: 3 }), 4);
  });

  it("a forged evaluation is found lazily and its node named; a spare completes the group", async () => {
    const c = cluster(5, 3, "pw", "s");
    const attempt = await c.attempt("pw");
    const [a, b, d, spare] = attempt.choice.nodes;
    const forged = c.evaluate(b!, attempt.blindedElement);
    const bad = { ...forged, evaluatedElement: forged.evaluatedElement.add(Element.generator()) };
    const three = new Map([[a!, c.evaluate(a!, attempt.blindedElement)], [b!, bad], [d!, c.evaluate(d!, attempt.blindedElement)]]);
    assert.throws(() => finishRecover2(attempt, three, { threshold: 3 }), (e: unknown) => {
      assert.ok(e instanceof TooFewValid && e instanceof ProtocolError);
      assert.deepEqual([...(e as TooFewValid).setAside.keys()], [b]);
      assert.match((e as TooFewValid).setAside.get(b!)!, /DLEQ/);
      assert.equal((e as TooFewValid).missing, 1);
      assert.deepEqual((e as TooFewValid).nodes, [b!.name]);
      return true;
    });
    three.set(spare!, c.evaluate(spare!, attempt.blindedElement));
    const unlocked = finishRecover2(attempt, three, { threshold: 3 });
    assert.deepEqual([...unlocked.setAside.keys()], [b]);
    assert.ok(!unlocked.requests.has(b!));
  });

  it("a reply whose signature does not cover its policy is set aside", async () => {
    const c = cluster(3, 2, "pw", "s", 5);
    const attempt = await c.attempt("pw");
    const [a, b, d] = attempt.choice.nodes;
    const lying = { ...c.evaluate(b!, attempt.blindedElement), maxGuesses: 100 };
    const replies = new Map([[a!, c.evaluate(a!, attempt.blindedElement)], [b!, lying], [d!, c.evaluate(d!, attempt.blindedElement)]]);
    const unlocked = finishRecover2(attempt, replies, { threshold: 2 });
    assert.match(unlocked.setAside.get(b!)!, /signature does not verify/);
    assert.equal(unlocked.policy.maxGuesses, 5);
  });

  it("spares are admitted only when valid and of the same registration", async () => {
    const c = cluster(5, 3, "pw", "s");
    const attempt = await c.attempt("pw");
    const ns = attempt.choice.nodes;
    const first = new Map(ns.slice(0, 3).map((n) => [n, c.evaluate(n, attempt.blindedElement)]));
    const unlocked = finishRecover2(attempt, first, { threshold: 3 });
    const good = c.evaluate(ns[3]!, attempt.blindedElement);
    const forged = c.evaluate(ns[4]!, attempt.blindedElement);
    const bad = { ...forged, evaluatedElement: forged.evaluatedElement.add(Element.generator()) };
    const { unlocked: extended, setAside } = admitSpares(unlocked, first.values().next().value!, new Map([[ns[3]!, good], [ns[4]!, bad]]));
    assert.equal(extended.requests.size, 4);
    assert.deepEqual([...setAside.keys()], [ns[4]]);
    const other = { ...good, commitment: rng.bytes(32) };
    assert.match(admitSpares(unlocked, first.values().next().value!, new Map([[ns[3]!, other]])).setAside.get(ns[3]!)!, /inconsistent/);
  });

  it("a forged secret share is outvoted or named", async () => {
    const c = cluster(5, 3, "pw", "s");
    const attempt = await c.attempt("pw");
    const ns = attempt.choice.nodes;
    const unlocked = finishRecover2(attempt, new Map(ns.map((n) => [n, c.evaluate(n, attempt.blindedElement)])), { threshold: 3 });
    const replies = new Map(ns.map((n) => [n, c.release(n)]));
    replies.set(ns[0]!, { ...c.release(ns[1]!) }); // another node's share: its commitment fails here
    assert.equal(new TextDecoder().decode(finishRecover3(unlocked, replies, { threshold: 3 })), "s");
    const few = new Map([...replies].slice(0, 3));
    assert.throws(() => finishRecover3(unlocked, few, { threshold: 3 }), (e: unknown) => {
      assert.ok(e instanceof ProtocolError);
      assert.deepEqual((e as ProtocolError).nodes, [ns[0]!.name]);
      return true;
    });
    assert.throws(() => finishRecover3(unlocked, new Map([...replies].slice(1, 3)), { threshold: 3 }), ClusterUnavailable);
  });
});

describe("register, reset, heal", () => {
  it("the epoch ignores one node's unbacked jump", () => {
    const ns = nodes(3);
    const st = (e: bigint) => userStatus({ tombstoneEpoch: e });
    assert.equal(registrationEpoch([st(3n), st(5n), st(4n)]), 6n);
    assert.equal(registrationEpoch([st(3n), st(3n + EPOCH_JUMP_LIMIT + 1n), st(2n)]), 4n);
    assert.equal(registrationEpoch([]), 1n);
    assert.equal(ns.length, 3);
  });

  it("reset targets: spent or evaluated holders with a nonce, never the releasing ones", () => {
    const ns = nodes(4);
    const v = rng.bytes(16);
    const nonce = rng.bytes(40);
    const answers = new Map<NodeRef, UserStatus>([
      [ns[0]!, userStatus({ committed: info(v, { guessesRemaining: 10 }), resetNonce: nonce })],
      [ns[1]!, userStatus({ committed: info(v, { guessesRemaining: 7 }), resetNonce: nonce })],
      [ns[2]!, userStatus({ committed: info(v, { guessesRemaining: 7 }) })],
      [ns[3]!, userStatus({ committed: info(v, { guessesRemaining: 3 }), resetNonce: nonce })],
    ]);
    const targets = resetTargets(answers, { version: v, releasing: new Set([ns[3]!]), evaluated: new Set() });
    assert.deepEqual(targets, [ns[1]]);
    assert.deepEqual(resetTargets(answers, { version: v, releasing: new Set(), evaluated: new Set([ns[0]!]) }), [ns[0], ns[1], ns[3]]);
    const unlockKey = rng.bytes(32);
    const req = resetRequests(unlockKey, v, answers, targets).get(ns[1]!)!;
    assert.equal(toHex(req.proof), toHex(kdf.resetProof(kdf.unlockTag(unlockKey, ns[1]!.nodeId), v, nonce)));
  });

  it("fill only when an answering node lacks the version and nothing newer was seen", () => {
    const ns = nodes(3);
    const v = rng.bytes(16);
    const full = new Map<NodeRef, UserStatus>(ns.map((n) => [n, userStatus({ committed: info(v) })]));
    assert.ok(!heal.fillWanted(full, v, 1n));
    const missing = new Map(full);
    missing.set(ns[2]!, userStatus());
    assert.ok(heal.fillWanted(missing, v, 1n));
    assert.deepEqual(heal.missingCopies(missing, v), [ns[2]]);
    const newer = new Map(missing);
    newer.set(ns[1]!, userStatus({ committed: info(v), pending: info(rng.bytes(16), { epoch: 2n }) }));
    assert.ok(!heal.fillWanted(newer, v, 1n));
    assert.ok(heal.newerSeen([userStatus({ committed: info(rng.bytes(16)) })], v, 1n)); // same epoch, other version
    assert.ok(heal.newerSeen([userStatus({ tombstoneEpoch: 1n })], v, 1n));
  });
});
