/**
 * `pakr/core`: the pure protocol core of the TypeScript SDK (sans-I/O), one module per module
 * of the Python SDK's `pakr.proto`, with the same function names in camelCase. Applications
 * use the `Client` of the package root; this entry point serves tools, tests and other
 * implementations that need the protocol steps themselves.
 */
export * from "./errors.js";
export * as bytes from "./bytes.js";
export * as group from "./group.js";
export * as kdf from "./kdf.js";
export * as oprf from "./oprf.js";
export * as shamir from "./shamir.js";
export * as hpke from "./hpke.js";
export * as seal from "./seal.js";
export * as sealed from "./sealed.js";
export * as messages from "./messages.js";
export * as policy from "./policy.js";
export * as randomness from "./randomness.js";
export * as register from "./register.js";
export * as choice from "./choice.js";
export * as recover from "./recover.js";
export * as reset from "./reset.js";
export * as heal from "./heal.js";
export * as deletion from "./delete.js";
export * as manifest from "./manifest.js";
export * as tokens from "./tokens.js";
export * as wire from "./wire.js";
export * as exitcodes from "./exitcodes.js";
export { Element, Scalar } from "./group.js";
export { HpkePrivateKey, HpkePublicKey } from "./hpke.js";
export type { Argon2Params } from "./kdf.js";
export type { Manifest, ManifestNode, NodeSet } from "./manifest.js";
export type { NodeRef, UserRef, UserStatus, VersionInfo } from "./messages.js";
export { PasswordMismatch, TooFewValid } from "./recover.js";
