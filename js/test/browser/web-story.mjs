// The browser story of examples/web in headless Chromium (Debian's package), driven by
// playwright-core: sign up, clear all site storage, sign in on a new device with the password
// alone (same key, message decrypted), wrong passwords show the guesses left, lockout shown.
//   node test/browser/web-story.mjs URL SCREENSHOT   (prints one JSON line of what it saw)
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const seen = {};
const step = async (page, button, wanted) => {
  await page.click(button);
  await page.waitForFunction(
    (states) => states.includes(document.getElementById("status").dataset.state),
    wanted,
    { timeout: 90_000 },
  );
  return { state: await page.getAttribute("#status", "data-state"), text: await page.textContent("#status") };
};

try {
  // Device 1: sign up.
  const first = await browser.newContext();
  const page = await first.newPage();
  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"]');
  await page.fill("#user", "alice");
  await page.fill("#password", "correct horse battery staple");
  const signup = await step(page, "#signup", ["signed-up", "error"]);
  assert.equal(signup.state, "signed-up", signup.text);
  const publicKey = await page.textContent("#pubkey");
  assert.match(publicKey, /^[0-9a-f]{64}$/);
  seen.publicKey = publicKey;

  // Clear all site storage: the browser forgets the key.
  const cleared = await step(page, "#clear", ["cleared"]);
  assert.equal(cleared.state, "cleared");
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.textContent("#device-key"), "none");
  await first.close();

  // Device 2 (a fresh browser profile): a wrong password first, then the right one.
  const second = await browser.newContext();
  const device = await second.newPage();
  await device.goto(url);
  await device.waitForSelector('#status[data-state="ready"]');
  assert.equal(await device.evaluate(() => localStorage.getItem("pakr-example-seed")), null);
  await device.fill("#user", "alice");
  await device.fill("#password", "wrong horse");
  const wrong = await step(device, "#signin", ["wrong-password", "locked-out", "error"]);
  assert.equal(wrong.state, "wrong-password", wrong.text);
  assert.match(wrong.text, /4 guess\(es\) left/);
  seen.wrong = wrong.text;
  await device.fill("#password", "correct horse battery staple");
  const signin = await step(device, "#signin", ["signed-in", "error", "wrong-password"]);
  assert.equal(signin.state, "signed-in", signin.text);
  assert.equal(await device.textContent("#pubkey"), publicKey);
  const message = await device.textContent("#message");
  assert.match(message, /^Welcome, alice\. This message was encrypted to your public key/);
  seen.message = message;
  await device.screenshot({ path: screenshot, fullPage: true });

  // Lockout: a second user, wrong passwords until the page says locked out (the figure
  // never rises, and the lockout takes the five wrong passwords the page registered with,
  // give or take a hedged Recover2 under load), then even the right password is refused.
  await device.fill("#user", "bob");
  await device.fill("#password", "bob's password");
  assert.equal((await step(device, "#signup", ["signed-up", "error"])).state, "signed-up");
  const lefts = [];
  let previous = Infinity;
  for (let i = 0; i < 15; i++) {
    await device.fill("#password", `not bob's password ${i}`);
    const answer = await step(device, "#signin", ["wrong-password", "locked-out", "error"]);
    assert.notEqual(answer.state, "error", answer.text);
    lefts.push(answer.text);
    if (answer.state === "locked-out") break;
    const left = Number(/(\d+) guess/.exec(answer.text)[1]);
    assert.ok(left < 5 && left <= previous, `${left} after ${previous}: ${JSON.stringify(lefts)}`);
    previous = left;
  }
  assert.match(lefts.at(-1), /^Locked out/, JSON.stringify(lefts));
  assert.ok(lefts.length >= 6 && lefts.length <= 8, JSON.stringify(lefts));
  await device.fill("#password", "bob's password");
  const locked = await step(device, "#signin", ["locked-out", "signed-in", "error"]);
  assert.equal(locked.state, "locked-out", `${locked.text} after ${JSON.stringify(lefts)}`);
  seen.guesses = lefts;
  seen.locked = locked.text;
  await second.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
