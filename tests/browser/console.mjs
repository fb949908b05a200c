// Drives the gateway's admin console in a real browser: Debian's Chromium, headless, through
// playwright-core, with axe-core checking each page for accessibility.
//
//   node tests/browser/console.mjs GATEWAY_URL ARTIFACT_DIR [CHROMIUM]
//
// Expects a linking conflict waiting (the e2e test creates one by two logins). Logs in at
// /admin through the simulated Ho Chi Minh City system as the administrator "tuan", searches
// "le thi hoa" (no accents), opens an account, goes to the conflicts queue, opens the conflict
// and resolves it ("same person → merge") with a reason using the keyboard only (Tab to the
// decision, Space, Tab to the reason, type, Tab to the button, Enter), and runs axe on every
// page it sees. Then the audit log page from the navigation, filtered by action with the keyboard
// (Tab to the action field, type, Enter), and the operations page, where the failed back-channel
// logout the e2e test made (its RP is down) is retried with the keyboard (Tab to the retry's
// reason, type, Tab to its button, Enter): the page says it failed again. Screenshots go to
// ARTIFACT_DIR. Prints one JSON line and exits 0, or prints why and exits 1. An axe violation of
// impact "serious" or "critical" fails the run.

import { harness } from './harness.mjs';

const { gateway, checked, fail, shot, axe, expectUrl, expectText, focused, typeLogin, run } = harness('console.mjs');

const REASON = 'Cùng một người: đã đối chiếu CCCD tại phường';

await run(async (page) => {
  // 1. Not logged in: the chooser, then back to the console.
  await page.goto(`${gateway}/admin`);
  await expectUrl(page, '/login?request=');
  await Promise.all([page.waitForNavigation(), page.locator('a[href^="/upstream/hcm/login"]').click()]);
  await typeLogin(page, 'tuan');
  await expectUrl(page, '/admin');
  if ((await page.getAttribute('html', 'lang')) !== 'vi') fail('the console is not lang="vi"');
  await expectText(page, 'h1', 'Tìm tài khoản');
  if ((await page.locator('script').count()) > 0) fail('the console has a script');
  checked.pages.push('console-search');
  await axe(page, 'console-search');
  await shot(page, '01-console-search');

  // 2. Search by name without accents: both records, numbers masked.
  await page.locator('#search-by').selectOption('name');
  await page.locator('#search-q').fill('le thi hoa');
  await Promise.all([page.waitForNavigation(), page.locator('#search-submit').click()]);
  if ((await page.locator('tr.result').count()) !== 2) fail('two accounts expected for "le thi hoa"');
  if ((await page.content()).includes('074185001276')) fail('a whole national ID number is in the list');
  checked.pages.push('console-results');
  await axe(page, 'console-results');
  await shot(page, '02-console-results');

  // 3. An account: the full number (this view is audited).
  await Promise.all([page.waitForNavigation(), page.locator('a.open-account').first().click()]);
  await expectUrl(page, '/admin/accounts/');
  checked.pages.push('console-account');
  await axe(page, 'console-account');
  await shot(page, '03-console-account');

  // 4. The conflicts queue, in English too, and the conflict side by side.
  await Promise.all([page.waitForNavigation(), page.locator('nav.console a[href^="/admin/conflicts"]').click()]);
  if ((await page.locator('tr.conflict').count()) !== 1) fail('one conflict expected in the queue');
  checked.pages.push('console-conflicts');
  await axe(page, 'console-conflicts');
  await shot(page, '04-console-conflicts');
  await Promise.all([page.waitForNavigation(), page.locator('#lang-switch').click()]);
  if ((await page.getAttribute('html', 'lang')) !== 'en') fail('the English console is not lang="en"');
  await expectText(page, 'h1', 'Linking conflicts');
  checked.pages.push('console-conflicts-en');
  await axe(page, 'console-conflicts-en');
  await Promise.all([page.waitForNavigation(), page.locator('#lang-switch').click()]);
  await Promise.all([page.waitForNavigation(), page.locator('a.review').first().click()]);
  await expectUrl(page, '/admin/conflicts/');
  const differing = await page.locator('table.compare tr.differs th').allInnerTexts();
  if (!differing.some((t) => t.startsWith('Ngày sinh'))) fail(`the birthdates are not marked as different: ${differing}`);
  checked.pages.push('console-conflict');
  await axe(page, 'console-conflict');
  await shot(page, '05-console-conflict');

  // 5. Keyboard only: Tab from the top to the decision, Space ("same person"), Tab past the
  //    survivor (existing, preselected) to the reason, type it, Tab to the button, Enter.
  //    Every stop must show a focus indicator.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    checked.focus_order.push(f.what);
    if (!f.visible) fail(`no visible focus indicator on ${f.what}`);
    reached = f.what.startsWith('input#decision-merge');
  }
  if (!reached) fail(`Tab never reached the decision; focus went ${checked.focus_order.join(' > ')}`);
  await page.keyboard.press('Space');
  if (!(await page.locator('#decision-merge').isChecked())) fail('Space did not choose "same person"');
  for (const expected of ['input#survivor-existing', 'textarea#resolve-reason']) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    checked.focus_order.push(f.what);
    if (!f.visible) fail(`no visible focus indicator on ${f.what}`);
    if (!f.what.startsWith(expected)) fail(`expected focus on ${expected}, it went to ${f.what}`);
  }
  await page.keyboard.type(REASON);
  await page.keyboard.press('Tab');
  const button = await focused(page);
  checked.focus_order.push(button.what);
  if (!button.what.startsWith('button#resolve-submit')) fail(`after the reason, focus went to ${button.what}`);
  if (!button.visible) fail('no visible focus indicator on the button');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await expectUrl(page, 'done=merged');
  await expectText(page, '#done', 'merged');
  if ((await page.locator('tr.conflict').count()) !== 0) fail('the queue still lists the conflict');
  checked.pages.push('console-resolved');
  await axe(page, 'console-resolved');
  await shot(page, '06-console-resolved');

  // 6. The audit log, from the navigation; the merge just made is in it, found by the keyboard:
  //    Tab to the action filter, type, Enter.
  const tabTo = async (prefix) => {
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press('Tab');
      const f = await focused(page);
      checked.focus_order.push(f.what);
      if (!f.visible) fail(`no visible focus indicator on ${f.what}`);
      if (f.what.startsWith(prefix)) return;
    }
    fail(`Tab never reached ${prefix}; focus went ${checked.focus_order.slice(-60).join(' > ')}`);
  };
  await Promise.all([page.waitForNavigation(), page.locator('nav.console a[href^="/admin/audit"]').click()]);
  await expectText(page, 'h1', 'Nhật ký kiểm tra');
  checked.pages.push('console-audit');
  await axe(page, 'console-audit');
  await shot(page, '07-console-audit');
  await tabTo('input#filter-action');
  await page.keyboard.type('merge');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await expectUrl(page, 'action=merge');
  const merges = await page.locator('tr.audit-line').evaluateAll((rows) => rows.map((r) => r.dataset.action));
  if (merges.length < 1 || merges.some((a) => a !== 'merge')) fail(`the action filter shows ${merges}`);
  if (!(await page.locator('td.reason').allInnerTexts()).includes(REASON)) fail('the merge reason is not in the audit log page');
  checked.pages.push('console-audit-filtered');
  await axe(page, 'console-audit-filtered');

  // 7. Operations: the failed back-channel logout, retried by the keyboard (its RP is still
  //    down, so the page says it failed again and keeps it listed).
  await Promise.all([page.waitForNavigation(), page.locator('nav.console a[href^="/admin/operations"]').click()]);
  await expectText(page, 'h1', 'Vận hành');
  if ((await page.locator('tr.failure form.retry').count()) !== 1) fail('one failed logout with its retry form expected');
  checked.pages.push('console-operations');
  await axe(page, 'console-operations');
  await shot(page, '08-console-operations');
  await tabTo('textarea#retry-1-reason');
  await page.keyboard.type('Ứng dụng báo đã chạy lại');
  await page.keyboard.press('Tab');
  const retry = await focused(page);
  checked.focus_order.push(retry.what);
  if (!retry.what.startsWith('button#retry-1-submit')) fail(`after the retry's reason, focus went to ${retry.what}`);
  if (!retry.visible) fail('no visible focus indicator on the retry button');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await expectUrl(page, 'done=retry-failed');
  if ((await page.locator('#done').getAttribute('data-done')) !== 'retry-failed') fail('the page does not say the retry failed');
  if ((await page.locator('tr.failure').count()) !== 1) fail('the failure left the list though it failed again');
  checked.pages.push('console-retried');
  await axe(page, 'console-retried');
  await shot(page, '09-console-retried');
});
