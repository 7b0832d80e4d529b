// Drive the benchmark page in headless Chromium: node bench/recover-chromium.mjs URL USER RUNS
// (the password on stdin). Prints {totals, argon2} in seconds as one JSON line.
import { text } from "node:stream/consumers";
import { chromium } from "playwright-core";

const [url, user, runs] = process.argv.slice(2);
const password = (await text(process.stdin)).trimEnd();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.title === "pakr bench ready");
  const result = await page.evaluate(
    ([u, p, n]) => window.pakrBench(u, p, n),
    [user, password, Number(runs)],
  );
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
