// The admin page's script. Everything the server sends is put into the
// page with textContent, never as HTML. Every mutating request carries the
// session's CSRF token; the session cookie itself is HttpOnly.
'use strict';

const $ = (sel) => document.querySelector(sel);
let csrf = '';
let pending = null; // the change being previewed: {add, remove}

async function api(method, path, body, type) {
  const headers = { 'X-Filegate-UI': '1', Accept: 'application/json' };
  if (csrf) headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = type || 'application/json';
    payload = type ? body : JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!res.ok) {
    const err = new Error(data && data.error ? data.error.message : `${res.status} ${res.statusText}`);
    err.status = res.status;
    err.data = data;
    throw err;
  }
  return data;
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function say(msg, isError) {
  const s = $('#status');
  s.textContent = msg;
  s.className = isError ? 'error' : '';
}

function lineText(line) { return line.join(', '); }

// human writes bytes as `filegate user list` does: binary units, one
// decimal, so that the page and the command line agree.
function human(n) {
  if (n < 1024) return `${n} B`;
  let div = 1024, exp = 0;
  while (n / div >= 1024 && exp < 5) { div *= 1024; exp++; }
  return `${(n / div).toFixed(1)} ${'KMGTPE'[exp]}iB`;
}

function decision(d) {
  return el('span', { className: d.allowed ? 'allowed' : 'denied' }, d.allowed ? 'allowed' : 'denied');
}

// Sign-in and session.

async function start() {
  try {
    const s = await api('GET', '/admin/session');
    signedIn(s);
  } catch (e) {
    $('#signin').hidden = false;
  }
}

function signedIn(s) {
  csrf = s.csrf;
  $('#me').textContent = s.user;
  $('#whoami').hidden = false;
  $('#signin').hidden = true;
  $('#app').hidden = false;
  refresh();
}

$('#signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = new URLSearchParams(new FormData(ev.target));
  $('#signin-error').textContent = '';
  try {
    const s = await api('POST', '/admin/session', form.toString(), 'application/x-www-form-urlencoded');
    ev.target.reset();
    signedIn(s);
  } catch (e) {
    $('#signin-error').textContent = e.message;
  }
});

$('#signout').addEventListener('click', async () => {
  try { await api('DELETE', '/admin/session'); } catch (e) { /* signed out either way */ }
  location.reload();
});

function refresh() {
  loadRules();
  loadUsers();
  loadGroups();
  loadIntegrity();
}

// Policies.

const kinds = {
  g2: { f1: 'Subject', f2: 'Level', f3: 'Folder or file (path or id)', f1ph: 'group:staff',
        f2ph: 'level:read', f3ph: '/reports', f2opts: ['level:metadata', 'level:read', 'level:full'] },
  p: { f1: 'Subject', f2: 'Where (path, id or *)', f3: 'Actions', f1ph: 'group:staff',
       f2ph: '/reports', f3ph: '(stat|read)', f2opts: ['*'] },
  g: { f1: 'Member', f2: 'Group or role', f3: '', f1ph: 'user:alice', f2ph: 'group:staff',
       f2opts: ['role:admin'] },
};

function setKind() {
  const k = kinds[$('#kind').value];
  $('#f1-label').textContent = k.f1;
  $('#f2-label').textContent = k.f2;
  $('#f3-label').textContent = k.f3;
  $('#f1').placeholder = k.f1ph;
  $('#f2').placeholder = k.f2ph;
  $('#f3').placeholder = k.f3ph || '';
  $('#f3-wrap').hidden = !k.f3;
  $('#f3').required = !!k.f3;
  const dl = $('#f2-options');
  dl.replaceChildren(...k.f2opts.map((o) => el('option', { value: o })));
}
$('#kind').addEventListener('change', setKind);
setKind();

$('#rule-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const kind = $('#kind').value;
  const f = ['#f1', '#f2', '#f3'].map((s) => $(s).value.trim());
  const line = kind === 'g' ? ['g', f[0], f[1]] : [kind, f[0], f[1], f[2]];
  preview({ add: [line] });
});

async function preview(change) {
  pending = change;
  const box = $('#preview');
  $('#force').checked = false;
  $('#force-wrap').hidden = true;
  $('#preview-refusal').hidden = true;
  $('#preview-summary').textContent = 'Working out what would change…';
  $('#preview-table tbody').replaceChildren();
  $('#apply').disabled = true;
  box.hidden = false;
  box.scrollIntoView({ block: 'nearest' });
  try {
    const r = await api('POST', '/api/v1/policies/what-if', change);
    pending = { add: r.change.add, remove: r.change.remove };
    const parts = [];
    if (r.change.add) parts.push(...r.change.add.map((l) => '+ ' + lineText(l)));
    if (r.change.remove) parts.push(...r.change.remove.map((l) => '- ' + lineText(l)));
    $('#preview-change').textContent = parts.join('\n');
    const n = r.diffs.length;
    $('#preview-summary').textContent =
      `${n} decision${n === 1 ? '' : 's'} would change, out of ${r.sample.queries} checked over ` +
      `${r.sample.subjects.length} subject(s) and ${r.sample.objects.length} object(s)` +
      (r.sample.truncated ? ' (sample capped).' : '.') + (n ? '' : ' Nothing in the sample changes.');
    $('#preview-table tbody').replaceChildren(...r.diffs.map((d) => el('tr', {},
      el('td', {}, d.subject), el('td', {}, d.action), el('td', {}, d.path || d.object),
      el('td', {}, decision(d.before)), el('td', {}, decision(d.after)))));
    if (r.refusal) {
      const rf = $('#preview-refusal');
      rf.replaceChildren(el('strong', {}, 'The server will refuse this change: '), r.refusal.message);
      rf.hidden = false;
      $('#force-wrap').hidden = r.refusal.code !== 'unsafe';
    }
    $('#apply').disabled = false;
  } catch (e) {
    $('#preview-summary').textContent = '';
    const rf = $('#preview-refusal');
    rf.textContent = e.message;
    rf.hidden = false;
  }
}

$('#cancel').addEventListener('click', () => {
  pending = null;
  $('#preview').hidden = true;
});

$('#apply').addEventListener('click', async () => {
  if (!pending) return;
  $('#apply').disabled = true;
  try {
    const r = await api('POST', '/api/v1/policies', { ...pending, force: $('#force').checked });
    say(`Applied (policy revision ${r.revision}).`);
    pending = null;
    $('#preview').hidden = true;
    $('#rule-form').reset();
    setKind();
    refresh();
  } catch (e) {
    say(e.message, true);
    $('#apply').disabled = false;
  }
});

$('#filter-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  loadRules();
});

async function loadRules() {
  const q = new URLSearchParams({ ptype: $('#filter-ptype').value, v0: $('#filter-v0').value.trim() });
  try {
    const r = await api('GET', '/api/v1/policies?' + q);
    $('#rules-count').textContent = `${r.total} line${r.total === 1 ? '' : 's'}` +
      (r.total > r.rules.length ? `, first ${r.rules.length} shown` : '');
    $('#rules tbody').replaceChildren(...r.rules.map((rule) => {
      const l = rule.line;
      const id = l[0] === 'p' ? l[2] : l[0] === 'g2' ? l[3] : '';
      const path = id && id !== '*' ? (r.paths[id] || 'no such node') : '';
      const tr = el('tr', {}, el('td', {}, el('code', {}, lineText(l))), el('td', {}, path));
      tr.dataset.rule = lineText(l);
      const btn = el('button', { type: 'button', className: 'danger' }, 'Remove…');
      if (rule.builtin) {
        btn.disabled = true;
        btn.title = 'Built-in rules cannot be removed';
      } else {
        btn.addEventListener('click', () => preview({ remove: [l] }));
      }
      tr.append(el('td', {}, btn));
      return tr;
    }));
  } catch (e) {
    say(e.message, true);
  }
}

$('#import-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const file = $('#import-file').files[0];
  if (!file) return;
  const q = new URLSearchParams({ replace: $('#import-replace').checked, force: $('#import-force').checked });
  try {
    const r = await api('POST', '/api/v1/policies/import?' + q, await file.text(), 'text/csv');
    say(`Imported ${r.read} lines: ${r.added} added, ${r.removed} removed.`);
    refresh();
  } catch (e) {
    say(e.message, true);
  }
});

// Explain.

$('#explain-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams({
    subject: $('#explain-subject').value.trim(),
    action: $('#explain-action').value,
    object: $('#explain-object').value.trim(),
  });
  const out = $('#explain-result');
  try {
    const r = await api('GET', '/api/v1/policies/explain?' + q);
    const via = r.via.length ? el('ul', {}, ...r.via.map((l) => el('li', {}, el('code', {}, lineText(l)))))
      : el('span', { className: 'muted' }, r.allowed ? 'the rule names the subject itself' : '—');
    out.replaceChildren(el('dl', {},
      el('dt', {}, 'Decision'), el('dd', {}, decision(r)),
      el('dt', {}, 'Request'), el('dd', {}, `${r.subject} ${r.action} ${r.path || r.object}`),
      el('dt', {}, 'Rule'), el('dd', {}, r.rule ? el('code', {}, lineText(r.rule)) : 'no rule allows it (denied by default)'),
      el('dt', {}, 'Through'), el('dd', {}, via),
      el('dt', {}, 'Groups and roles'), el('dd', {}, r.roles.length ? r.roles.join(', ') : 'none')));
  } catch (e) {
    out.replaceChildren(el('p', { className: 'error' }, e.message));
  }
});

// Users and groups.

async function loadUsers() {
  try {
    const r = await api('GET', '/api/v1/users');
    $('#users-table tbody').replaceChildren(...r.users.map((u) => {
      const btn = el('button', { type: 'button' }, u.disabled ? 'Enable' : 'Disable');
      btn.addEventListener('click', async () => {
        try {
          await api('PATCH', '/api/v1/users/' + encodeURIComponent(u.name), { disabled: !u.disabled });
          say(`${u.name} is now ${u.disabled ? 'enabled' : 'disabled'}.`);
          loadUsers();
        } catch (e) {
          say(e.message, true);
        }
      });
      const tr = el('tr', {}, el('td', {}, u.name), el('td', {}, u.admin ? 'yes' : 'no'),
        el('td', {}, u.groups.join(', ')), statusCell(u), storageCell(u), el('td', {}, btn));
      tr.dataset.user = u.name;
      return tr;
    }));
  } catch (e) {
    say(e.message, true);
  }
}

// statusCell shows whether u is disabled and, while repeated failed
// sign-ins block u's password, until when, with a button that ends it.
function statusCell(u) {
  const td = el('td', {}, u.disabled ? 'disabled' : 'active');
  if (!u.sign_in_blocked_until) return td;
  const until = new Date(u.sign_in_blocked_until);
  const btn = el('button', { type: 'button', className: 'unblock' }, 'Unblock');
  btn.addEventListener('click', async () => {
    try {
      await api('PATCH', '/api/v1/users/' + encodeURIComponent(u.name), { unblock: true });
      say(`${u.name} may sign in again.`);
      loadUsers();
    } catch (e) {
      say(e.message, true);
    }
  });
  td.append(el('span', { className: 'denied sign-in-blocked' }, ` sign-ins blocked until ${until.toLocaleTimeString()}`), ' ', btn);
  return td;
}

const quotaUnits = { MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

// storageCell shows what counts against u's quota and a form to set it,
// through the same PATCH as the Disable button; 0 removes the quota.
function storageCell(u) {
  const over = u.quota_bytes > 0 && u.used_bytes > u.quota_bytes;
  const text = el('span', { className: 'quota-text' }, u.quota_bytes > 0
    ? `${human(u.used_bytes)} of ${human(u.quota_bytes)}` : `${human(u.used_bytes)}, no quota`);
  const size = el('input', { type: 'number', min: '0', step: 'any', required: true, className: 'quota-size',
    placeholder: '0 = none', title: '0 removes the quota' });
  size.setAttribute('aria-label', `New quota for ${u.name}`);
  const unit = el('select', { className: 'quota-unit' }, ...Object.keys(quotaUnits).map((k) => el('option', { value: k }, k)));
  unit.value = 'GiB';
  unit.setAttribute('aria-label', `Unit of ${u.name}'s quota`);
  const form = el('form', { className: 'quota-form' }, size, unit,
    el('button', { type: 'submit', className: 'quota-set' }, 'Set quota'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const bytes = Math.round(Number(size.value) * quotaUnits[unit.value]);
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      say(`${size.value} ${unit.value} is not a quota the page can send.`, true);
      return;
    }
    try {
      await api('PATCH', '/api/v1/users/' + encodeURIComponent(u.name), { quota_bytes: bytes });
      say(bytes ? `${u.name}'s quota is now ${human(bytes)}.` : `${u.name} no longer has a quota.`);
      loadUsers();
    } catch (e) {
      say(e.message, true);
    }
  });
  return el('td', {}, text, over ? el('span', { className: 'denied' }, ' (over quota)') : '', form);
}

$('#user-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const u = await api('POST', '/api/v1/users', {
      name: $('#user-name').value.trim(), password: $('#user-password').value, admin: $('#user-admin').checked,
    });
    say(`Created user ${u.name}.`);
    ev.target.reset();
    loadUsers();
  } catch (e) {
    say(e.message, true);
  }
});

async function loadGroups() {
  try {
    const r = await api('GET', '/api/v1/groups');
    $('#groups-table tbody').replaceChildren(...r.groups.map((g) => {
      const members = el('ul', {}, ...g.members.map((m) => {
        const btn = el('button', { type: 'button', className: 'danger' }, 'Remove…');
        btn.addEventListener('click', () => preview({ remove: [['g', m, 'group:' + g.name]] }));
        return el('li', {}, m + ' ', btn);
      }));
      return el('tr', {}, el('td', {}, g.name), el('td', {}, g.description), el('td', {}, members));
    }));
  } catch (e) {
    say(e.message, true);
  }
}

$('#group-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const g = await api('POST', '/api/v1/groups', {
      name: $('#group-name').value.trim(), description: $('#group-description').value,
    });
    say(`Created group ${g.name}.`);
    ev.target.reset();
    loadGroups();
  } catch (e) {
    say(e.message, true);
  }
});

$('#member-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const m = $('#member-name').value.trim();
  preview({ add: [['g', m.includes(':') ? m : 'user:' + m, 'group:' + $('#member-group').value.trim()]] });
});

start();

// Integrity checks: the latest runs, and a run's damaged files on demand.

async function loadIntegrity() {
  try {
    const r = await api('GET', '/api/v1/integrity-checks?limit=10');
    $('#integrity-table tbody').replaceChildren(...r.checks.map((c) => {
      let damaged = String(c.problems);
      if (c.problems > 0) {
        damaged = el('button', { type: 'button', className: 'danger' }, `${c.problems}: show`);
        damaged.addEventListener('click', () => showDamaged(c.id));
      }
      let state = `${c.state} ${c.finished_at ? new Date(c.finished_at).toLocaleString() : ''}`;
      if (c.state === 'running') state = c.instance ? 'running' : 'waiting for a server to take it up';
      if (c.error) state += ` (paused: ${c.error})`;
      const tr = el('tr', {}, el('td', {}, new Date(c.started_at).toLocaleString()), el('td', {}, state),
        el('td', {}, c.instance), el('td', {}, `${c.files} (${human(c.bytes)})`), el('td', {}, damaged));
      tr.dataset.check = c.id;
      return tr;
    }));
  } catch (e) {
    say(e.message, true);
  }
}

async function showDamaged(id) {
  try {
    const r = await api('GET', '/api/v1/integrity-checks/' + encodeURIComponent(id));
    $('#integrity-damaged').replaceChildren(...r.damaged_files.map((f) =>
      el('li', {}, `${f.path}: ${f.kind}` + (f.recorded ? ` (recorded ${f.recorded}, stored ${f.stored || 'nothing'})` : ''))));
  } catch (e) {
    say(e.message, true);
  }
}

$('#integrity-start').addEventListener('click', async () => {
  try {
    await api('POST', '/api/v1/integrity-checks');
    say('Integrity check requested: a server takes it up within a minute.');
  } catch (e) {
    say(e.message, true);
  }
  loadIntegrity();
});

$('#audit-verify').addEventListener('click', async () => {
  const out = $('#audit-result');
  out.textContent = 'Verifying…';
  try {
    const v = await api('GET', '/api/v1/audit/verify');
    out.className = v.ok ? 'allowed' : 'denied';
    out.textContent = v.ok
      ? `Intact: ${v.rows} rows; head ${v.head_seq} ${v.head_hash}. Keep the head hash elsewhere to detect a rewrite of the whole tail.`
      : `TAMPERED${v.bad_seq ? ' at row ' + v.bad_seq : ''}: ${v.problem} (${v.rows} rows verified before it).`;
  } catch (e) {
    out.textContent = '';
    say(e.message, true);
  }
});
