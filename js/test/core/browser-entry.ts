// Bundled by browser.test.ts for headless Chromium: the pakr-v2.json and RFC 9497 replays in
// a browser's runtime (WebCrypto, WebAssembly), reporting what matched.
import pakr from "../../../tests/vectors/pakr-v2.json" with { type: "json" };
import rfc9497 from "../../../tests/vectors/rfc9497-ristretto255-sha512.json" with { type: "json" };
import { type Check, replayCase, replayLabels, replayRfc9497, toHex } from "./replay.js";

declare global {
  interface Window {
    runVectors(): Promise<{ checked: number; failures: string[] }>;
  }
}

window.runVectors = async () => {
  let checked = 0;
  const failures: string[] = [];
  const check: Check = {
    eq(actual, expected, what) {
      checked++;
      if (toHex(actual) !== expected) failures.push(what);
    },
    ok(condition, what) {
      if (!condition) failures.push(what);
    },
  };
  try {
    replayLabels(pakr.labels, check);
    for (const c of pakr.cases) await replayCase(c, check);
    replayRfc9497(rfc9497, check);
  } catch (error) {
    failures.push(`threw: ${String(error)}`);
  }
  return { checked, failures };
};
