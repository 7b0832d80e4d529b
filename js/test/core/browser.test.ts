// The vector replays in headless Chromium (Debian's package, driven by playwright-core): the
// core is byte-compatible in a browser's runtime too, not only in Node.js. Skipped, saying so,
// when no Chromium is installed (`.ci/run` installs it; `apt-get install chromium`).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

describe("vectors in Chromium", { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  it("pakr-v2.json and RFC 9497 replay in the browser", { timeout: 240_000 }, async () => {
    const bundle = await build({
      entryPoints: [new URL("./browser-entry.ts", import.meta.url).pathname],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "error",
    });
    const script = bundle.outputFiles[0]!.text;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      // http://127.0.0.1 is a secure context (WebCrypto); the route answers without a server.
      await page.route("http://127.0.0.1:9/**", (route) =>
        route.fulfill(
          route.request().url().endsWith("/vectors.js")
            ? { contentType: "text/javascript", body: script }
            : { contentType: "text/html", body: '<!doctype html><script type="module" src="/vectors.js"></script>' },
        ),
      );
      await page.goto("http://127.0.0.1:9/");
      await page.waitForFunction(() => typeof window.runVectors === "function");
      const result = await page.evaluate(() => window.runVectors());
      assert.deepEqual(result.failures, []);
      // pakr-v2: 260 values; RFC 9497: 2 keys, 3 values per input (6 inputs), 3 VOPRF proofs.
      assert.equal(result.checked, 260 + 2 + 3 * 6 + 3);
    } finally {
      await browser.close();
    }
  });
});
