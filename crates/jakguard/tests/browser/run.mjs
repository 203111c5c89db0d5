// Drives the JAKGuard web app in headless Chromium (playwright-core) and checks every page
// with axe-core. Started by crates/jakguard/tests/web.rs, which runs the real server and
// writes the plan: what to answer, which symptoms to pick, which bundle to upload, and what
// the pages must then show (computed from the knowledge and the engine, not written here).
//
//   node run.mjs PLAN.json OUT_DIR
//
// Writes screenshots and the downloaded files to OUT_DIR, prints one line per check, and
// exits 1 if any check or any serious/critical axe violation fails.

import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const [planPath, out] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, "utf8"));
const base = plan.base;
mkdirSync(out, { recursive: true });
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const failures = [];
const axeReport = {};
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

try {
  // Mobile first: a phone-sized viewport.
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: { width: 390, height: 844 },
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));

  async function axe(name) {
    // Responsive: nothing wider than the phone screen (no sideways scrolling).
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(wide <= 0, `${name} fits a phone-width screen (${wide > 0 ? wide + "px too wide" : "ok"})`);
    // evaluate() runs through the DevTools protocol, so the page's CSP (no inline script)
    // stays on while axe runs.
    await page.evaluate(axeSource);
    const result = await page.evaluate(() => axe.run(document, { resultTypes: ["violations"] }));
    const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    axeReport[name] = result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
    check(bad.length === 0, `axe ${name}: ${bad.length} serious/critical violation(s)${bad.length ? " " + JSON.stringify(axeReport[name].filter((v) => v.impact === "serious" || v.impact === "critical")) : ""}`);
  }
  async function shot(name) {
    await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
  }
  async function download(click, file) {
    const [d] = await Promise.all([page.waitForEvent("download"), click()]);
    await d.saveAs(path.join(out, file));
    return file;
  }

  // ---- home -------------------------------------------------------------------------------
  await page.goto(base + "/");
  check((await page.locator("h1").count()) === 1, "home has one h1");
  for (const href of plan.home_links) {
    check((await page.locator(`a[href="${href}"]`).count()) > 0, `home links to ${href}`);
  }
  await axe("home");
  await shot("home");
  // Keyboard: the first Tab reaches the skip link, and it leads to the main content.
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement?.classList.contains("skip")), "first Tab focuses the skip link");
  await page.keyboard.press("Enter");
  check(await page.evaluate(() => location.hash === "#main"), "the skip link goes to the main content");

  // ---- before you start --------------------------------------------------------------------
  await page.goto(base + "/patient/before-you-start");
  await axe("questionnaire");
  await shot("questionnaire");
  for (const [linkId, value] of Object.entries(plan.questionnaire.answers)) {
    const radio = page.locator(`input[type=radio][name="${linkId}"][value="${value}"]`);
    if (await radio.count()) {
      await radio.check();
    } else {
      await page.locator(`textarea[name="${linkId}"]`).fill(value);
    }
  }
  await Promise.all([page.waitForNavigation(), page.locator("form.questionnaire button[type=submit]").click()]);
  const summaryText = await page.locator("main").innerText();
  check(page.url().endsWith("/patient/before-you-start") && (await page.locator("h1").innerText()).includes("summary"), "questionnaire submits to the summary");
  for (const s of plan.questionnaire.summary_must_contain) {
    check(summaryText.includes(s), `summary mentions: ${s.slice(0, 70)}`);
  }
  for (const s of plan.questionnaire.summary_must_not_contain) {
    check(!summaryText.includes(s), `summary does not mention: ${s.slice(0, 70)}`);
  }
  check(await page.locator("button.js-print").isVisible(), "with JavaScript the print button shows");
  await axe("summary");
  await shot("summary");
  // The printed summary is one page (US Letter) and still names what the other answers were.
  const pdf = await page.pdf({ path: path.join(out, "summary-print.pdf"), format: "Letter" });
  const pages = (pdf.toString("latin1").match(/\/Type\s*\/Page[^s]/g) || []).length;
  check(pages === 1, `the printed summary is ${pages} page(s)`);
  await page.emulateMedia({ media: "print" });
  check(await page.locator("p.print-only").isVisible(), "the printed summary says what the other answers were");
  check(!(await page.locator("section[aria-labelledby=answers]").isVisible()), "the printed summary leaves out the full answer table");
  await page.emulateMedia({ media: "screen" });
  await download(() => page.getByRole("button", { name: /QuestionnaireResponse/ }).click(), "QuestionnaireResponse.json");
  check(true, "QuestionnaireResponse downloaded");

  // ---- symptom checker ------------------------------------------------------------------------
  await page.goto(base + "/patient/symptoms");
  await axe("symptoms");
  await shot("symptoms");
  for (const c of plan.symptoms) {
    await page.goto(base + "/patient/symptoms");
    for (const id of c.pick) await page.locator(`#s-${id}`).check();
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "What should I do?" }).click()]);
    const level = await page.locator("h1[data-level]").getAttribute("data-level");
    check(level === c.expect, `symptoms ${c.pick.join("+")} -> ${level} (expected ${c.expect})`);
    const h1 = await page.locator("h1").innerText();
    check(h1 === c.title, `triage title for ${c.expect}: "${h1}"`);
    await axe(`triage-${c.expect}`);
    await shot(`triage-${c.expect}`);
  }

  // ---- drug pages -------------------------------------------------------------------------
  for (const d of plan.drugs) {
    await page.goto(`${base}/patient/drugs/${d}`);
    check((await page.locator("h1").innerText()).toLowerCase().includes(d), `drug page ${d}`);
    await axe(`drug-${d}`);
    await shot(`drug-${d}`);
  }

  // ---- calendar -----------------------------------------------------------------------------
  await page.goto(base + "/patient/calendar");
  await axe("calendar");
  await shot("calendar");
  await page.selectOption("#drug", plan.calendar.drug);
  await page.fill("#start", plan.calendar.start);
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Show my test dates" }).click()]);
  const rows = await page.locator("table.visits tbody tr").count();
  check(rows === plan.calendar.visits, `calendar shows ${rows} visits (expected ${plan.calendar.visits})`);
  await axe("calendar-result");
  await shot("calendar-result");
  await download(() => page.getByRole("button", { name: /\.ics/ }).click(), "calendar.ics");
  check(true, "calendar downloaded");

  // ---- clinician ----------------------------------------------------------------------------
  await page.goto(base + "/clinician");
  await axe("clinician");
  await shot("clinician");
  await page.setInputFiles("#bundle_file", plan.upload.file);
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Assess", exact: true }).click()]);
  check(/\/clinician\/assessment\/[0-9a-f]{32}$/.test(page.url()), `upload redirects to its assessment (${page.url().replace(base, "")})`);
  for (const [drug, decision] of Object.entries(plan.upload.decisions)) {
    const shown = await page.locator(`[data-drug="${drug}"]`).getAttribute("data-decision");
    check(shown === decision, `assessment shows ${drug}: ${shown} (expected ${decision})`);
  }
  await axe("assessment");
  await shot("assessment");
  await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: "Printable pre-treatment checklist" }).click()]);
  check(page.url().endsWith("/checklist"), "checklist opens");
  await axe("checklist");
  await shot("checklist");

  check(consoleErrors.length === 0, `no console errors or CSP violations${consoleErrors.length ? ": " + consoleErrors.join(" | ") : ""}`);

  // Error page (an expired or unknown link: a 404, which the console reports) is accessible too.
  await page.goto(base + "/clinician/assessment/00000000000000000000000000000000");
  await axe("expired-link");

  // ---- without JavaScript: the symptom checker still works ---------------------------------------
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const p2 = await nojs.newPage();
  await p2.goto(base + "/patient/symptoms");
  const c = plan.symptoms[0];
  for (const id of c.pick) await p2.locator(`#s-${id}`).check();
  await Promise.all([p2.waitForNavigation(), p2.getByRole("button", { name: "What should I do?" }).click()]);
  check((await p2.locator("h1[data-level]").getAttribute("data-level")) === c.expect, "symptom checker works without JavaScript");
  await p2.goto(base + "/patient/before-you-start");
  check((await p2.locator("form.questionnaire").count()) === 1, "questionnaire renders without JavaScript");
  await nojs.close();
} catch (e) {
  check(false, `browser run aborted: ${e && e.stack ? e.stack : e}`);
} finally {
  await browser.close();
}

writeFileSync(path.join(out, "axe-report.json"), JSON.stringify(axeReport, null, 2));
console.log(`${failures.length} failure(s); screenshots and downloads in ${out}`);
process.exit(failures.length ? 1 : 0);
