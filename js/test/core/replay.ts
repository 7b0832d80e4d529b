// The pakr-v2.json and RFC 9497 replays as plain functions over a `Check`, so the same code
// runs under node:test (vectors.test.ts) and in headless Chromium (browser.test.ts). No Node.js
// module is imported here.
import { fromHex, toHex } from "../../src/core/bytes.js";
import { Element, Scalar } from "../../src/core/group.js";
import * as hpke from "../../src/core/hpke.js";
import { HpkePrivateKey } from "../../src/core/hpke.js";
import * as kdf from "../../src/core/kdf.js";
import { type NodeRef, type Recover2Reply, type Recover3Reply, nodeRef } from "../../src/core/messages.js";
import * as oprf from "../../src/core/oprf.js";
import { DeterministicRandomness } from "../../src/core/randomness.js";
import { type VersionChoice, finishRecover2, finishRecover3, startRecover2 } from "../../src/core/recover.js";
import { newVersion, prepareRegistration } from "../../src/core/register.js";
import { openRecover3Reply, openRegister2Shares, sealRecover3Reply, sealRegister2Shares } from "../../src/core/sealed.js";
import * as shamir from "../../src/core/shamir.js";

/** How a replay reports: `eq` compares bytes with the recorded hex, `ok` any other condition. */
export interface Check {
  eq(actual: Uint8Array, expected: string, what: string): void;
  ok(condition: boolean, what: string): void;
}

const h = (text: string): Uint8Array => fromHex(text);

/** The labels of the vector file are kdf's. */
export function replayLabels(labels: Record<string, string>, check: Check): void {
  for (const [name, value] of Object.entries(labels)) {
    const ours = (kdf as unknown as Record<string, Uint8Array>)[name];
    check.ok(ours instanceof Uint8Array && new TextDecoder().decode(ours) === value, `kdf.${name}`);
  }
}

/** One case of pakr-v2.json: registration and recovery from the recorded random stream. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function replayCase(c: any, check: Check): Promise<void> {
  const eq = check.eq.bind(check);
  const inp = c.inputs;
  const reg = c.registration;
  const rec = c.recovery;
  const rng = new DeterministicRandomness(h(inp.seed));
  const user = { tenant: inp.tenant, userId: inp.user_id };
  const argon2 = {
    memoryKib: inp.argon2.memory_kib,
    iterations: inp.argon2.iterations,
    parallelism: inp.argon2.parallelism,
  };
  const epoch = BigInt(inp.epoch);
  const nodes: NodeRef[] = inp.nodes.map((n: { id: string; index: number }) => {
    eq(kdf.tupleHash(new TextEncoder().encode("pakr/v1/test-node-id"), kdf.u64(n.index)).slice(0, 16), n.id, "node id");
    return nodeRef(h(n.id), n.index);
  });
  const threshold: number = inp.threshold;

  const version = newVersion(rng);
  eq(version, reg.version, "version");
  eq(kdf.registrationSalt(user.tenant, user.userId, version), reg.salt, "salt");
  const stretched = await kdf.stretchPassword(
    new TextEncoder().encode(inp.password),
    user.tenant,
    user.userId,
    version,
    argon2,
  );
  eq(stretched.accessKey, reg.access_key, "access_key");
  eq(stretched.encryptionKeySeed, reg.encryption_key_seed, "encryption_key_seed");

  const plan = prepareRegistration({
    user,
    nodes,
    threshold,
    version,
    epoch,
    expected: new Map(),
    accessKey: stretched.accessKey,
    encryptionKeySeed: stretched.encryptionKeySeed,
    secret: h(inp.secret),
    argon2,
    maxGuesses: inp.max_guesses,
    rng,
  });
  const requests = nodes.map((n) => plan.requests.get(toHex(n.nodeId))!);
  const k = shamir.reconstruct(new Map(nodes.map((n, i) => [n.index, requests[i]!.oprfKeyShare])), threshold);
  const s = shamir.reconstruct(new Map(nodes.map((n, i) => [n.index, requests[i]!.secretShare])), threshold);
  eq(k.encoded, reg.oprf_key, "oprf_key");
  const output = oprf.evaluate(k, stretched.accessKey);
  eq(output, reg.oprf_output, "oprf_output");
  const unlockKey = kdf.unlockKey(output);
  eq(unlockKey, reg.unlock_key, "unlock_key");
  eq(requests[0]!.commitment, reg.commitment, "commitment");
  eq(requests[0]!.verifyingKey, reg.verifying_key, "verifying_key");
  eq(s.encoded, reg.secret_scalar, "secret_scalar");
  eq(kdf.encryptionKey(stretched.encryptionKeySeed, s.encoded), reg.encryption_key, "encryption_key");
  eq(kdf.secretAd(user.tenant, user.userId, version), reg.secret_ad, "secret_ad");
  eq(requests[0]!.encryptedSecret, reg.encrypted_secret, "encrypted_secret");

  for (const [i, node] of nodes.entries()) {
    const r = requests[i]!;
    const v = reg.nodes[i];
    check.ok(v.index === node.index, "node index");
    eq(r.oprfKeyShare.encoded, v.oprf_key_share, "oprf_key_share");
    eq(r.oprfPublicShare.encoded, v.oprf_public_share, "oprf_public_share");
    eq(
      kdf.oprfKeyStatement(user.tenant, user.userId, version, epoch, node.nodeId, node.index, r.oprfPublicShare.encoded, r.maxGuesses, r.argon2),
      v.oprf_key_statement,
      "oprf_key_statement",
    );
    eq(r.oprfKeySignature, v.oprf_key_signature, "oprf_key_signature");
    eq(r.unlockTag, v.unlock_tag, "unlock_tag");
    eq(r.secretShare.encoded, v.secret_share, "secret_share");
    eq(r.secretCommitment, v.secret_commitment, "secret_commitment");
    const nodeKey = await HpkePrivateKey.fromSeed(
      kdf.tupleHash(new TextEncoder().encode("pakr/v1/test-node-hpke"), kdf.u64(node.index)),
    );
    eq(nodeKey.seed, v.hpke_seed, "hpke_seed");
    eq(nodeKey.public.encoded, v.hpke_public_key, "hpke_public_key");
    eq(hpke.register2Info(user, node.nodeId, version, epoch), v.register2_info, "register2_info");
    const context = { user, nodeId: node.nodeId, version, epoch };
    // Python's ciphertext opens here, to the plaintext TypeScript builds.
    const opened = await openRegister2Shares(h(v.sealed_shares), { ...context, nodeKey });
    const plain = [opened.oprfKeyShare.encoded, opened.secretShare.encoded, opened.unlockTag, opened.encryptedSecret];
    eq(Uint8Array.from(plain.flatMap((p) => [...p])), v.sealed_shares_plaintext, "sealed_shares (Python → TS)");
    // And TypeScript's own sealing opens to the same fields.
    const sealed = await sealRegister2Shares(r, { ...context, nodeKey: nodeKey.public });
    const again = await openRegister2Shares(sealed, { ...context, nodeKey });
    check.ok(again.oprfKeyShare.equals(r.oprfKeyShare) && again.secretShare.equals(r.secretShare), "TS-sealed shares open");
    // Another epoch's info does not open it.
    let opensElsewhere = true;
    try {
      await openRegister2Shares(sealed, { ...context, epoch: epoch + 1n, nodeKey });
    } catch {
      opensElsewhere = false;
    }
    check.ok(!opensElsewhere, "sealed_shares open under another epoch's info");
  }

  // Recovery with the recorded nodes, replies built as a node would.
  const use = nodes.filter((n) => inp.recover_with.includes(n.index));
  const choice: VersionChoice = {
    version,
    epoch,
    argon2,
    nodes: use,
    pendingNodes: [],
    suspects: [],
    maxGuesses: 0,
    cannotServe: [],
    movedOn: [],
    guesses: [],
  };
  const attempt = await startRecover2(user, choice, stretched.accessKey, stretched.encryptionKeySeed, rng);
  eq(attempt.blind.encoded, rec.blind, "blind");
  eq(attempt.blindedElement.encoded, rec.blinded_element, "blinded_element");
  eq(attempt.attemptId, rec.attempt_id, "attempt_id");
  eq(attempt.replyKey.seed, rec.reply_key_seed, "reply_key_seed");
  eq(attempt.replyKey.public.encoded, rec.reply_key, "reply_key");
  const replies = new Map<NodeRef, Recover2Reply>();
  for (const node of use) {
    const req = plan.requests.get(toHex(node.nodeId))!;
    const evaluated = oprf.blindEvaluate(req.oprfKeyShare, attempt.blindedElement);
    const proof = oprf.generateProof(req.oprfKeyShare, Element.generator(), req.oprfPublicShare, [attempt.blindedElement], [evaluated], {
      r: rng.scalar(),
    });
    replies.set(node, {
      evaluatedElement: evaluated,
      proof,
      oprfPublicShare: req.oprfPublicShare,
      oprfKeySignature: req.oprfKeySignature,
      verifyingKey: req.verifyingKey,
      commitment: req.commitment,
      guessesRemaining: inp.max_guesses - 1,
      nonce: rng.bytes(16),
      maxGuesses: inp.max_guesses,
    });
  }
  const unlocked = finishRecover2(attempt, replies, { threshold });
  const opened = new Map<NodeRef, Recover3Reply>();
  for (const [i, node] of use.entries()) {
    const v = rec.nodes[i];
    const reply = replies.get(node)!;
    check.ok(v.index === node.index, "node index");
    eq(reply.evaluatedElement.encoded, v.evaluated_element, "evaluated_element");
    eq(reply.proof.encode(), v.proof, "proof");
    eq(reply.nonce, v.nonce, "nonce");
    eq(unlocked.requests.get(node)!.unlockProof, v.unlock_proof, "unlock_proof");
    eq(kdf.resetProof(kdf.unlockTag(unlocked.unlockKey, node.nodeId), version, h(v.reset_nonce)), v.reset_proof, "reset_proof");
    eq(hpke.recover3Info(user, node.nodeId, version, attempt.attemptId), v.recover3_info, "recover3_info");
    const context = { user, nodeId: node.nodeId, version, attemptId: attempt.attemptId };
    const fromPython = await openRecover3Reply(h(v.sealed_share), { ...context, replyKey: attempt.replyKey });
    eq(
      Uint8Array.from([...fromPython.secretShare.encoded, ...fromPython.encryptedSecret, ...fromPython.secretCommitment]),
      v.sealed_share_plaintext,
      "sealed_share (Python → TS)",
    );
    const req = plan.requests.get(toHex(node.nodeId))!;
    const sealed = await sealRecover3Reply(
      { secretShare: req.secretShare, encryptedSecret: req.encryptedSecret, secretCommitment: req.secretCommitment },
      { ...context, replyKey: attempt.replyKey.public },
    );
    const ours = await openRecover3Reply(sealed, { ...context, replyKey: attempt.replyKey });
    check.ok(ours.secretShare.equals(req.secretShare), "TS-sealed reply opens to the share");
    opened.set(node, fromPython);
  }
  eq(finishRecover3(unlocked, opened, { threshold }), rec.secret, "recovered secret");
  eq(h(inp.secret), rec.secret, "secret");
}

/** RFC 9497 ristretto255-SHA512, every suite and vector (batches included). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function replayRfc9497(rfc: any, check: Check): void {
  const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);
  for (const suite of rfc.suites) {
    const mode = suite.mode as oprf.Mode;
    const pair = oprf.deriveKeyPair(h(suite.Seed), h(suite.KeyInfo), mode);
    check.eq(pair.secretKey.encoded, suite.skSm, "skSm");
    const sk = pair.secretKey;
    for (const v of suite.vectors) {
      const inputs = list<string>(v.Input).map(h);
      const C: Element[] = [];
      const D: Element[] = [];
      inputs.forEach((input, i) => {
        const b = oprf.blind(input, { blind: Scalar.decode(h(list<string>(v.Blind)[i]!)), mode });
        check.eq(b.blindedElement.encoded, list<string>(v.BlindedElement)[i]!, `${v.name} BlindedElement`);
        const z = oprf.blindEvaluate(sk, b.blindedElement);
        check.eq(z.encoded, list<string>(v.EvaluationElement)[i]!, `${v.name} EvaluationElement`);
        check.eq(oprf.finalize(input, b.blind, z), list<string>(v.Output)[i]!, `${v.name} Output`);
        C.push(b.blindedElement);
        D.push(z);
      });
      if (mode === oprf.Mode.VOPRF) {
        const proof = oprf.generateProof(sk, Element.generator(), pair.publicKey, C, D, { r: Scalar.decode(h(v.ProofRandomScalar)), mode });
        check.eq(proof.encode(), v.Proof, `${v.name} Proof`);
        check.ok(oprf.verifyProof(Element.generator(), pair.publicKey, C, D, proof, mode), `${v.name} verifies`);
      }
    }
  }
}

export { toHex };
