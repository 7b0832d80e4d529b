/**
 * The page's script: sign up, clear site storage, sign in on a "new device" with the password
 * alone. The operator key is pinned in this bundle (PAKR_OPERATOR_KEY, set when it is built);
 * the manifest is fetched from the app's server and verified against it. Access tokens come
 * from the app's backend (`/token`), which a real app would mint only after its own login.
 */
import { Client, InvalidPassword, LockedOut, PakrError, serialStateFromStorage } from "pakr";
import { fromHex, open, publicKeyOf, seal, toHex } from "./e2ee.js";

declare const PAKR_OPERATOR_KEY: string;
/** Wrong passwords that lock the key out for good (small, so the example shows it). */
const MAX_GUESSES = 5;

const $ = (id: string) => document.getElementById(id) as HTMLElement;
const field = (id: string) => ($(id) as HTMLInputElement).value;

function show(state: string, text: string): void {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showDeviceKey(): void {
  const seed = localStorage.getItem("pakr-example-seed");
  $("device-key").textContent = seed ? `held (public ${toHex(publicKeyOf(fromHex(seed))).slice(0, 16)}…)` : "none";
}

async function client(): Promise<Client> {
  const [config, manifest] = await Promise.all([
    fetch("/config.json").then((r) => r.json() as Promise<{ tenant: string }>),
    fetch("/manifest.json").then((r) => r.json() as Promise<unknown>),
  ]);
  return await Client.fromManifest(manifest, {
    tenant: config.tenant,
    operatorKey: PAKR_OPERATOR_KEY,
    serialState: serialStateFromStorage(
      (k) => localStorage.getItem(k),
      (k, v) => localStorage.setItem(k, v),
    ),
    tokenProvider: async (userId, audience) => {
      const url = `/token?user=${encodeURIComponent(userId)}&audience=${encodeURIComponent(audience)}`;
      const reply = await fetch(url);
      if (!reply.ok) throw new Error(`token endpoint said ${reply.status}`);
      return await reply.text();
    },
  });
}

function explain(error: unknown): void {
  if (error instanceof LockedOut) {
    show("locked-out", "Locked out: too many wrong passwords. The key is erased for good; sign up again.");
  } else if (error instanceof InvalidPassword) {
    show("wrong-password", `Wrong password: ${error.guessesRemaining} guess(es) left.`);
  } else if (error instanceof PakrError) {
    show("error", `${error.name}: ${error.message}`);
  } else {
    show("error", `Unexpected error: ${String(error)}`);
  }
}

async function signUp(): Promise<void> {
  show("busy", "Signing up: making a key pair and storing its seed with pakr…");
  const user = field("user");
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const publicKey = publicKeyOf(seed);
  const pakr = await client();
  try {
    await pakr.register(user, field("password"), seed, { maxGuesses: MAX_GUESSES });
  } finally {
    await pakr.close();
  }
  const welcome = `Welcome, ${user}. This message was encrypted to your public key at sign-up.`;
  const reply = await fetch(`/users/${encodeURIComponent(user)}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ publicKey: toHex(publicKey), message: toHex(seal(welcome, publicKey)) }),
  });
  if (!reply.ok) throw new Error(`the app server said ${reply.status}`);
  localStorage.setItem("pakr-example-seed", toHex(seed));
  $("pubkey").textContent = toHex(publicKey);
  showDeviceKey();
  show("signed-up", `Signed up as ${user}. ${MAX_GUESSES} wrong passwords lock the key out.`);
}

async function signIn(): Promise<void> {
  show("busy", "Signing in: getting the key back from the password…");
  const user = field("user");
  const pakr = await client();
  let seed: Uint8Array;
  try {
    seed = await pakr.recover(user, field("password"));
  } finally {
    await pakr.close();
  }
  const publicKey = publicKeyOf(seed);
  const account = (await fetch(`/users/${encodeURIComponent(user)}`).then((r) => r.json())) as {
    publicKey: string;
    message: string;
  };
  if (account.publicKey !== toHex(publicKey)) throw new Error("the recovered key is not this account's key");
  $("pubkey").textContent = toHex(publicKey);
  $("message").textContent = open(fromHex(account.message), seed);
  localStorage.setItem("pakr-example-seed", toHex(seed));
  showDeviceKey();
  show("signed-in", `Signed in as ${user}: the key came back from the password alone.`);
}

async function clearStorage(): Promise<void> {
  localStorage.clear();
  sessionStorage.clear();
  for (const db of (await indexedDB.databases?.()) ?? []) if (db.name) indexedDB.deleteDatabase(db.name);
  for (const name of await caches.keys().catch(() => [] as string[])) await caches.delete(name);
  $("pubkey").textContent = "–";
  $("message").textContent = "–";
  showDeviceKey();
  show("cleared", "Site storage cleared: this browser no longer holds the key.");
}

function on(id: string, action: () => Promise<void>): void {
  $(id).addEventListener("click", () => {
    action().catch(explain);
  });
}

on("signup", signUp);
on("signin", signIn);
on("clear", clearStorage);
showDeviceKey();
show("ready", "Ready.");
