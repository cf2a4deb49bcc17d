// Every Fabrique page as a person sees it, in headless Chromium: axe-core (WCAG 2.1 A and AA
// rules) in French and in English, no sideways scrolling on a phone or at 200% zoom, and a
// login done with the keyboard alone.
//
// Usage: node check.mjs BASE_URL MANAGER_PASSWORD MEMBER_PASSWORD
// Prints one line per page checked and exits 1 when anything is wrong.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');
const [base, managerPassword, memberPassword] = process.argv.slice(2);
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const problems = [];

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-quic'],
});

async function axe(page, label) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  for (const v of result.violations) {
    problems.push(`${label}: axe ${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).join(', ')}`);
  }
  return result.violations.length;
}

async function noSidewaysScroll(page, label) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) problems.push(`${label}: ${overflow}px of sideways scrolling`);
}

// Logs in with the keyboard only: the username field has focus, Tab moves to the password,
// Enter submits.
async function keyboardLogin(page, username, password) {
  await page.goto(`${base}/login`);
  // autofocus is applied once the page is shown; give a loaded machine a moment.
  const focused = await page
    .waitForFunction(() => document.activeElement && document.activeElement.id === 'username', null, { timeout: 5000 })
    .then(() => 'username', () => page.evaluate(() => document.activeElement && document.activeElement.id));
  if (focused !== 'username') problems.push(`login: focus starts on "${focused}", not on the username`);
  await page.keyboard.type(username);
  await page.keyboard.press('Tab');
  await page.keyboard.type(password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  if (new URL(page.url()).pathname !== '/') problems.push(`keyboard login of ${username} ended on ${page.url()}`);
  await skipLink(page, `/ after login of ${username}`);
}

// On a page without autofocus, the skip link is the first thing Tab reaches, and Enter on it
// moves to the main content.
async function skipLink(page, label) {
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement && document.activeElement.className);
  if (first !== 'skip') problems.push(`${label}: the first Tab stop is "${first}", not the skip link`);
  await page.keyboard.press('Enter');
  const target = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (target !== 'main') problems.push(`${label}: the skip link led to "${target}", not to the main content`);
}

async function switchLanguage(page, lang) {
  const current = await page.evaluate(() => document.documentElement.lang);
  if (current !== lang) {
    await Promise.all([page.waitForNavigation(), page.locator(`button[name="lang"][value="${lang}"]`).press('Enter')]);
  }
  const now = await page.evaluate(() => document.documentElement.lang);
  if (now !== lang) problems.push(`language switch to ${lang} left the page in ${now}`);
}

async function checkPages(context, lang, paths) {
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await switchLanguage(page, lang);
  for (const path of paths) {
    const response = await page.goto(`${base}${path}`);
    const label = `${lang} ${path}`;
    const status = response.status();
    const here = new URL(page.url());
    if (here.pathname + here.search !== path) problems.push(`${label}: ended on ${page.url()}`);
    if (status >= 500) problems.push(`${label}: HTTP ${status}`);
    const n = await axe(page, label);
    await noSidewaysScroll(page, label);
    console.log(`${label}: HTTP ${status}, ${n} axe violation(s)`);
  }
  await page.close();
}

const managerPages = ['/', '/machines/1', '/machines/4', '/account', '/members', '/members/new', '/members/4',
  '/admin/machines', '/admin/machines/new', '/admin/machines/1', '/admin/machines/2', '/nowhere',
  '/machines/6/week', '/bookings', '/trainings', '/sessions/1', '/day', '/admin/calendar',
  '/admin/trainings/new', '/admin/trainings/1', '/badges', '/board', '/jobs', '/jobs/1', '/members/4/badges', '/plan',
  '/campaigns', '/campaigns/new', '/campaigns/1', '/campaigns/1/edit', '/campaigns/1/manage', '/campaigns/1/requests',
  '/campaigns/1/batches', '/campaigns/1/batches/1', '/campaigns/1/materials', '/campaigns/1/deliveries',
  '/campaigns/1/contribute', '/campaigns/1/request', '/members/4/card', '/machines/6/week?member=4',
  '/grid', '/grid?view=week'];
const memberPages = ['/', '/grid', '/grid?view=week', '/machines/3', '/account', '/members', '/machines/1/week', '/bookings', '/badges',
  '/trainings', '/sessions/1', '/jobs', '/board', '/campaigns', '/campaigns/1', '/campaigns/1/contribute'];
// Pages for people without an account: a campaign's public page and its request form.
const publicPages = ['/', '/campaigns', '/campaigns/1', '/campaigns/1/request', '/badges/verify'];

// The public request form: refused with a reason, then sent, then the follow page.
async function requestForm(page, label) {
  await page.goto(`${base}/campaigns/1/request`);
  const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  await page.fill('#organisation', 'École Jean Moulin');
  await page.selectOption('#kind', 'school');
  await page.fill('#quantity', '12');
  await page.fill('#needed_by', tomorrow);
  await page.fill('#delivery_place', 'Cour de l\'école');
  await page.fill('#contact_name', 'Mme Petit');
  await page.fill('#contact_phone', 'pas de numéro');
  const [refused] = await Promise.all([page.waitForNavigation(), page.press('#contact_phone', 'Enter')]);
  if (refused.status() !== 422) problems.push(`${label}: a wrong phone answered ${refused.status()}`);
  await axe(page, `${label} request refused`);
  await page.fill('#contact_phone', '04 78 11 22 33');
  const [sent] = await Promise.all([page.waitForNavigation(), page.press('#contact_phone', 'Enter')]);
  if (sent.status() !== 201) problems.push(`${label}: the request answered ${sent.status()}`);
  await axe(page, `${label} request sent`);
  const follow = await page.locator('.secret-once a').getAttribute('href');
  if (!follow) problems.push(`${label}: no follow link`);
  else {
    await page.goto(follow);
    await axe(page, `${label} request follow`);
    await noSidewaysScroll(page, `${label} request follow`);
    console.log(`${label} request form, sent page and follow page: checked`);
  }
}

// The public home, with the keyboard: the skip link first, then a campaign's request
// link reached by Tab and followed with Enter.
async function publicHome(page, label) {
  await page.goto(`${base}/`);
  await skipLink(page, `${label} /`);
  const request = page.locator('main a[href$="/request"]').first();
  if ((await request.count()) === 0) { problems.push(`${label}: no request link on the public home`); return; }
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (await request.evaluate(el => el === document.activeElement)) break;
  }
  if (!(await request.evaluate(el => el === document.activeElement))) problems.push(`${label}: Tab never reached the request link`);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  if (!new URL(page.url()).pathname.endsWith('/request')) problems.push(`${label}: Enter on the request link ended on ${page.url()}`);
  console.log(`${label} public home keyboard walk: checked`);
}

// The desk books a slot for Josette from her page, by keyboard, and the confirmation shows
// on her page without JavaScript.
async function deskBooking(context, lang) {
  const page = await context.newPage();
  await page.goto(`${base}/members/4`);
  await page.selectOption('#desk-machine', '6');
  await Promise.all([page.waitForNavigation(), page.locator('form[action$="/book"] button').press('Enter')]);
  const here = new URL(page.url());
  if (here.searchParams.get('member') !== '4') problems.push(`${lang} desk: the week is not for the member (${page.url()})`);
  const slot = page.locator('a[href^="/bookings/new"]').first();
  if ((await slot.count()) === 0) { problems.push(`${lang} desk: no free slot`); await page.close(); return; }
  await Promise.all([page.waitForNavigation(), slot.press('Enter')]);
  await axe(page, `${lang} desk booking confirmation`);
  await Promise.all([page.waitForNavigation(), page.locator('#note').press('Enter')]);
  if (new URL(page.url()).pathname !== '/members/4') problems.push(`${lang} desk: the booking ended on ${page.url()}`);
  const notice = await page.locator('main > p.notice[role="status"]').textContent().catch(() => null);
  if (!notice || !notice.includes('Josette')) problems.push(`${lang} desk: no confirmation naming the member (${notice})`);
  await axe(page, `${lang} member page with a notice`);
  await noSidewaysScroll(page, `${lang} member page with a notice`);
  console.log(`${lang} desk booking for a member: checked (${notice && notice.trim()})`);
  await page.close();
}

// "When is it free?" by keyboard: from the week of all machines to a day, then to a free
// slot's booking page, each step a Tab walk to a link and Enter.
async function gridKeyboard(context, label) {
  const page = await context.newPage();
  await page.goto(`${base}/grid?view=week`);
  const walkTo = async (selector) => {
    const target = page.locator(selector).first();
    if ((await target.count()) === 0) return false;
    for (let i = 0; i < 80; i++) {
      await page.keyboard.press('Tab');
      if (await target.evaluate(el => el === document.activeElement)) {
        await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
        return true;
      }
    }
    return false;
  };
  if (!(await walkTo('table.grid td.cell-free a:visible'))) problems.push(`${label}: no free day reached by Tab on the week grid`);
  else if (!(await walkTo('td.cell-free a:visible'))) problems.push(`${label}: no free slot reached by Tab on the day grid`);
  else if (!new URL(page.url()).pathname.startsWith('/bookings/new')) problems.push(`${label}: the grid's slot led to ${page.url()}`);
  else console.log(`${label} grid keyboard walk: checked`);
  await page.close();
}

// A job's page follows the job live: with JavaScript it opens its event stream.
async function jobLive(context, label) {
  const page = await context.newPage();
  const stream = page.waitForRequest(r => /\/jobs\/\d+\/events$/.test(r.url()), { timeout: 10000 }).catch(() => null);
  await page.goto(`${base}/jobs/1`);
  const live = await page.locator('#job[data-live]').count();
  if (live > 0) {
    if (!(await stream)) problems.push(`${label}: the job's page did not open its event stream`);
    else console.log(`${label} job page live stream: checked`);
  } else console.log(`${label} job page: finished job, no stream`);
  await page.close();
}

// The laser's operator panel, from the board's link: taken (every control shown, with the
// notice), one jog step pressed from the keyboard, then given back.
async function operatorPanel(context, label) {
  const page = await context.newPage();
  await page.goto(`${base}/board`);
  const link = await page.locator('a[href$="/panel"]').first().getAttribute('href').catch(() => null);
  if (!link) { problems.push(`${label}: no operator panel link on the board`); await page.close(); return; }
  await page.goto(`${base}${link}`);
  await axe(page, `${label} panel`);
  await Promise.all([page.waitForNavigation(), page.locator('form:has(input[name="action"][value="take"]) button').click()]);
  if (!(await page.locator('button[name="move"]').count())) {
    const said = await page.locator('main').innerText();
    problems.push(`${label}: the panel shows no jog buttons once taken (${page.url()}): ${said.slice(0, 400)}`);
    await page.close();
    return;
  }
  await axe(page, `${label} panel taken`);
  await noSidewaysScroll(page, `${label} panel taken`);
  await page.locator('input[name="step"][value="1"]').check();
  await page.locator('button[name="move"][value="x-"]').focus();
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  if (!(await page.locator('[role="status"]').count())) problems.push(`${label}: no notice after a jog step`);
  await axe(page, `${label} panel after a step`);
  await Promise.all([page.waitForNavigation(), page.locator('button[name="action"][value="release"], form:has(input[name="action"][value="release"]) button').first().click()]);
  await axe(page, `${label} panel given back`);
  console.log(`${label} operator panel: checked`);
  await page.close();
}

// Pages reached by following links: a booking confirmation and a badge's public page.
async function followed(context, lang) {
  const page = await context.newPage();
  await page.goto(`${base}/machines/6/week`);
  const slots = page.locator('a[href^="/bookings/new"]');
  const slot = (await slots.count()) > 0 ? await slots.first().getAttribute('href') : null;
  if (!slot) problems.push('no free slot to book on the week page');
  else {
    await page.goto(`${base}${slot}`);
    await axe(page, `${lang} booking confirmation`);
    await noSidewaysScroll(page, `${lang} booking confirmation`);
  }
  await page.goto(`${base}/badges`);
  const badges = page.locator('main a[href^="/badges/"]');
  const badge = (await badges.count()) > 0 ? await badges.first().getAttribute('href') : null;
  if (badge) {
    await page.goto(`${base}${badge}`);
    await axe(page, `${lang} public badge`);
    console.log(`${lang} public badge: checked`);
    // The verification page: something that is no badge, then the badge's signed form.
    const jwt = await (await page.request.get(`${base}${badge}/credential.jwt`)).text();
    await page.goto(`${base}/badges/verify`);
    await page.fill('#credential', 'bonjour');
    const [refused] = await Promise.all([page.waitForNavigation(), page.click('main form button[type=submit]')]);
    if (refused.status() !== 422) problems.push(`${lang} verify: no badge answered ${refused.status()}`);
    await axe(page, `${lang} verify refused`);
    await page.fill('#credential', jwt);
    const [checked] = await Promise.all([page.waitForNavigation(), page.click('main form button[type=submit]')]);
    if (checked.status() !== 200) problems.push(`${lang} verify: the badge answered ${checked.status()}`);
    if ((await page.locator('.verdict-ok').count()) !== 1) problems.push(`${lang} verify: the badge is not reported genuine`);
    await axe(page, `${lang} verify report`);
    await noSidewaysScroll(page, `${lang} verify report`);
    console.log(`${lang} verify: checked`);
  }
  await page.close();
}

for (const viewport of [{ width: 1280, height: 900 }, { width: 640, height: 800 }, { width: 360, height: 740 }]) {
  // Anonymous pages, in both languages.
  for (const lang of ['fr', 'en']) {
    const context = await browser.newContext({ viewport, locale: lang === 'fr' ? 'fr-FR' : 'en-GB' });
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    const label = `${lang} /login ${viewport.width}px`;
    const pageLang = await page.evaluate(() => document.documentElement.lang);
    if (pageLang !== lang) problems.push(`${label}: page in ${pageLang} for a ${lang} browser`);
    await axe(page, label);
    await noSidewaysScroll(page, label);
    // A failed login shows its error accessibly too.
    await page.fill('#username', `nobody-${lang}-${viewport.width}`);
    await page.fill('#secret', 'not the password');
    const [refused] = await Promise.all([page.waitForNavigation(), page.press('#secret', 'Enter')]);
    if (refused.status() !== 401) problems.push(`${label}: a wrong password answered ${refused.status()}`);
    await axe(page, `${label} (refused)`);
    for (const path of publicPages) {
      const response = await page.goto(`${base}${path}`);
      const pageLabel = `${lang} ${path} ${viewport.width}px (no account)`;
      if (response.status() !== 200) problems.push(`${pageLabel}: HTTP ${response.status()}`);
      const n = await axe(page, pageLabel);
      await noSidewaysScroll(page, pageLabel);
      console.log(`${pageLabel}: HTTP ${response.status()}, ${n} axe violation(s)`);
    }
    if (viewport.width === 1280) await requestForm(page, `${lang} public`);
    await publicHome(page, `${lang} ${viewport.width}px`);
    await context.close();
  }
  for (const [username, password, paths] of [['manager', managerPassword, managerPages], ['member', memberPassword, memberPages]]) {
    const context = await browser.newContext({ viewport, locale: 'fr-FR' });
    const page = await context.newPage();
    await keyboardLogin(page, username, password);
    await page.close();
    for (const lang of ['fr', 'en']) {
      if (viewport.width === 1280 || lang === 'fr') {
        await checkPages(context, lang, paths);
        await followed(context, lang);
        if (username === 'manager' && viewport.width !== 640) await deskBooking(context, `${lang} ${viewport.width}px`);
        if (username === 'member') await gridKeyboard(context, `${lang} ${viewport.width}px ${username}`);
        if (username === 'manager' && viewport.width === 1280) await jobLive(context, `${lang} manager`);
        if (username === 'manager' && viewport.width !== 640) await operatorPanel(context, `${lang} ${viewport.width}px manager`);
      }
    }
    // Leave the account in French for the next round.
    const reset = await context.newPage();
    await reset.goto(`${base}/`);
    await switchLanguage(reset, 'fr');
    await context.close();
  }
}

await browser.close();
if (problems.length) {
  console.error(`${problems.length} problem(s):`);
  for (const p of problems) console.error(`- ${p}`);
  process.exit(1);
}
console.log('all pages clean');
