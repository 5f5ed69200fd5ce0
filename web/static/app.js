// The dashboard's few interactions: forms and buttons that call the JSON
// API with the session cookie and the CSRF token. No framework, no build.
(function () {
  'use strict';
  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') : '';
  }
  var base = meta('owmon-base') || './';
  var csrf = meta('csrf-token');
  var savedText = meta('owmon-saved') || 'Saved';

  function api(method, path, body) {
    return fetch(base + path, {
      method: method,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var data = {};
        try { data = JSON.parse(text); } catch (e) { data = { error: text }; }
        return { ok: resp.ok, status: resp.status, data: data };
      });
    });
  }

  function show(el, ok, text) {
    if (!el) return;
    el.textContent = text;
    el.classList.remove('ok', 'bad');
    el.classList.add(ok ? 'ok' : 'bad');
  }

  // errorText is the server's message. One about a field ("invalid JSON:
  // amount: not a decimal number", "updates[0].input_price: …") is shown
  // as the field's label in scope (a form or a row) and the words after it.
  function errorText(res, scope) {
    return fieldText((res.data && res.data.error) || ('HTTP ' + res.status), scope);
  }
  function fieldText(msg, scope) {
    var m = /^(?:invalid JSON: )?([A-Za-z_][\w.\[\]]*): (.+)$/.exec(msg || '');
    if (!m) return msg;
    var name = m[1].split(/[.\[\]]/).filter(Boolean).pop();
    var input = scope && scope.querySelector('[name="' + name + '"], [data-field="' + name + '"]');
    var label = input && (input.getAttribute('aria-label') ||
      (input.closest('label') && input.closest('label').firstChild.textContent.trim()));
    return (label || name) + ': ' + m[2];
  }
  // submit waits for a form's call: the page reloads when it succeeded,
  // else the form shows the error.
  function submit(form, call) {
    var out = form.querySelector('[data-result]');
    var button = form.querySelector('button[type=submit]');
    button.disabled = true;
    call.then(function (res) {
      button.disabled = false;
      if (res.ok) {
        show(out, true, savedText);
        window.location.reload();
      } else {
        show(out, false, errorText(res, form));
      }
    }, function (err) {
      button.disabled = false;
      show(out, false, String(err));
    });
  }

  // For the pages' own scripts (budgets.js), which run after this one.
  window.owmon = { api: api, show: show, errorText: errorText, submit: submit };


  // User actions: top up, set balance, block/unblock.
  var actions = document.getElementById('user-actions');
  if (actions) {
    var id = encodeURIComponent(actions.getAttribute('data-user-id'));
    actions.querySelectorAll('form[data-api-form]').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var kind = form.getAttribute('data-api-form');
        var f = form.elements;
        var call;
        if (kind === 'topup') {
          call = api('POST', 'api/v1/users/' + id + '/topup', { amount: f.amount.value.trim(), reason: f.reason.value });
        } else if (kind === 'balance') {
          call = api('PUT', 'api/v1/users/' + id + '/balance', { balance: f.balance.value.trim(), reason: f.reason.value });
        } else {
          call = api('PATCH', 'api/v1/users/' + id, { deleted: f.deleted.value === 'true' });
        }
        submit(form, call);
      });
    });
  }

  // Model prices: save a row, or every changed row, and show each row's result.
  var prices = document.getElementById('prices-table');
  if (prices) {
    var rows = function () { return Array.prototype.slice.call(prices.querySelectorAll('tr[data-price-row]')); };
    rows().forEach(function (row) {
      row.querySelectorAll('input').forEach(function (input) {
        input.addEventListener('input', function () { row.setAttribute('data-dirty', 'true'); });
      });
    });
    var item = function (row) {
      var get = function (name) { return row.querySelector('input[name="' + name + '"]').value.trim(); };
      var u = { id: row.getAttribute('data-model-id'), input_price: get('input_price'), output_price: get('output_price') };
      if (get('per_msg_price') !== '') u.per_msg_price = get('per_msg_price');
      return u;
    };
    var save = function (list, summary) {
      if (list.length === 0) return;
      api('POST', 'api/v1/models/price', { updates: list.map(item) }).then(function (res) {
        if (!res.ok) {
          list.forEach(function (row) { show(row.querySelector('[data-result]'), false, errorText(res, row)); });
          show(summary, false, errorText(res));
          return;
        }
        (res.data.results || []).forEach(function (r, i) {
          var row = list[i];
          if (!row) return;
          show(row.querySelector('[data-result]'), r.success, r.success ? savedText : fieldText(r.error, row));
          if (r.success) row.removeAttribute('data-dirty');
        });
        show(summary, res.data.success, res.data.message || '');
      }, function (err) { show(summary, false, String(err)); });
    };
    prices.querySelectorAll('button[data-price-save]').forEach(function (button) {
      button.addEventListener('click', function () { save([button.closest('tr')], null); });
    });
    var all = document.getElementById('prices-save-all');
    if (all) {
      all.addEventListener('click', function () {
        save(rows().filter(function (r) { return r.getAttribute('data-dirty') === 'true'; }),
          document.getElementById('prices-save-all-result'));
      });
    }
  }
  // Models: filter rows, sync from bases, test models one by one with
  // progress, import prices from a JSON file (the export is a plain link).
  var toolbarResult = document.getElementById('models-toolbar-result');
  var search = document.getElementById('models-search');
  if (search && prices) {
    search.addEventListener('input', function () {
      var q = search.value.trim().toLowerCase();
      Array.prototype.forEach.call(prices.querySelectorAll('tr[data-price-row]'), function (row) {
        row.hidden = q !== '' && row.getAttribute('data-model-id').toLowerCase().indexOf(q) < 0;
      });
    });
  }
  if (prices) {
    prices.querySelectorAll('button[data-price-sync]').forEach(function (button) {
      button.addEventListener('click', function () {
        var row = button.closest('tr');
        api('POST', 'api/v1/models/sync-price', { modelId: row.getAttribute('data-model-id') }).then(function (res) {
          show(row.querySelector('[data-result]'), res.ok, res.ok ? savedText : errorText(res));
          if (res.ok) window.location.reload();
        });
      });
    });
  }
  var testButton = document.getElementById('models-test-all');
  var testRow = function (row) {
    var out = row.querySelector('[data-result]');
    show(out, true, (testButton && testButton.getAttribute('data-testing')) || '…');
    return api('POST', 'api/v1/models/test', { modelId: row.getAttribute('data-model-id') }).then(function (res) {
      var ok = res.ok && res.data.success;
      var text = ok ? ((testButton && testButton.getAttribute('data-ok')) || 'ok') : (res.data.message || errorText(res));
      show(out, ok, text);
      return { ok: ok, text: text };
    }, function (err) {
      show(out, false, String(err));
      return { ok: false, text: String(err) };
    });
  };
  if (prices) {
    prices.querySelectorAll('button[data-model-test]').forEach(function (button) {
      button.addEventListener('click', function () { testRow(button.closest('tr')); });
    });
  }
  if (testButton && prices) {
    testButton.addEventListener('click', function () {
      var list = Array.prototype.filter.call(prices.querySelectorAll('tr[data-price-row]'), function (r) { return !r.hidden; });
      var done = 0, good = 0, failures = [];
      var summary = document.getElementById('models-test-summary');
      if (summary) { summary.hidden = true; summary.textContent = ''; }
      testButton.disabled = true;
      // When every model is tried: how many passed and failed, and which
      // failed with what.
      var finish = function () {
        testButton.disabled = false;
        var text = (testButton.getAttribute('data-summary') || '{passed} passed, {failed} failed')
          .replace('{passed}', String(good)).replace('{failed}', String(failures.length));
        show(toolbarResult, failures.length === 0, text);
        if (!summary) return;
        var head = document.createElement('p');
        head.setAttribute('data-testid', 'models-test-counts');
        head.className = 'result ' + (failures.length === 0 ? 'ok' : 'bad');
        head.textContent = text;
        summary.appendChild(head);
        if (failures.length > 0) {
          var label = document.createElement('p');
          label.textContent = testButton.getAttribute('data-failures') || 'Failed:';
          summary.appendChild(label);
          var ul = document.createElement('ul');
          failures.forEach(function (f) {
            var li = document.createElement('li');
            li.setAttribute('data-testid', 'models-test-failure');
            li.setAttribute('data-model-id', f.id);
            var id = document.createElement('span');
            id.className = 'model-id';
            id.textContent = f.id;
            li.appendChild(id);
            li.appendChild(document.createTextNode(': ' + f.text));
            ul.appendChild(li);
          });
          summary.appendChild(ul);
        }
        summary.hidden = false;
      };
      var next = function () {
        show(toolbarResult, true, done + ' / ' + list.length);
        if (done === list.length) { finish(); return; }
        var row = list[done];
        testRow(row).then(function (r) {
          done++;
          if (r.ok) good++; else failures.push({ id: row.getAttribute('data-model-id'), text: r.text });
          next();
        });
      };
      next();
    });
  }
  var syncAll = document.getElementById('models-sync-all');
  if (syncAll) {
    syncAll.addEventListener('click', function () {
      api('POST', 'api/v1/models/sync-all-prices', {}).then(function (res) {
        show(toolbarResult, res.ok, res.ok ? (res.data.message || savedText) : errorText(res));
        if (res.ok && res.data.syncedModels > 0) window.location.reload();
      });
    });
  }
  var importInput = document.getElementById('models-import');
  if (importInput) {
    importInput.addEventListener('change', function () {
      var file = importInput.files && importInput.files[0];
      if (!file) return;
      file.text().then(function (text) {
        var list;
        try { list = JSON.parse(text); } catch (e) { show(toolbarResult, false, String(e)); return; }
        if (!Array.isArray(list)) list = list.updates || [];
        var updates = list.map(function (p) {
          var u = { id: p.id, input_price: p.input_price, output_price: p.output_price };
          if (p.per_msg_price !== undefined && p.per_msg_price !== null) u.per_msg_price = p.per_msg_price;
          return u;
        });
        api('POST', 'api/v1/models/price', { updates: updates }).then(function (res) {
          show(toolbarResult, res.ok && res.data.success, res.data.message || errorText(res));
          if (res.ok) window.location.reload();
        });
      });
    });
  }

  // Settings: show and copy the function's API key.
  var key = document.getElementById('settings-apikey');
  if (key) {
    document.getElementById('apikey-show').addEventListener('click', function () {
      key.type = key.type === 'password' ? 'text' : 'password';
    });
    document.getElementById('apikey-copy').addEventListener('click', function () {
      var out = document.getElementById('apikey-result');
      var copied = this.getAttribute('data-copied');
      navigator.clipboard.writeText(key.value).then(function () { show(out, true, copied); },
        function (err) { show(out, false, String(err)); });
    });
  }

  // A notice carried over a navigation (after deleting a user, on the
  // users list): shown once at the top of the page.
  try {
    var notice = window.sessionStorage.getItem('owmon-notice');
    var mainEl = document.querySelector('main');
    if (notice && mainEl) {
      window.sessionStorage.removeItem('owmon-notice');
      var p = document.createElement('p');
      p.className = 'notice';
      p.setAttribute('role', 'status');
      p.setAttribute('data-testid', 'page-notice');
      p.textContent = notice;
      mainEl.insertBefore(p, mainEl.firstChild);
    }
  } catch (e) { /* no session storage: no notice */ }

  // Delete a user: the form opens from its button, and the delete is sent
  // only once the confirmation (the email, name or id shown) is typed.
  var delStart = document.getElementById('user-delete-start');
  var delForm = document.getElementById('user-delete-form');
  if (delStart && delForm) {
    var delInput = document.getElementById('user-delete-confirm');
    var delOut = delForm.querySelector('[data-result]');
    var delSubmit = document.getElementById('user-delete-submit');
    var openDelete = function (open) {
      delForm.hidden = !open;
      delStart.setAttribute('aria-expanded', open ? 'true' : 'false');
      if (open) { delInput.focus(); } else { delInput.value = ''; show(delOut, true, ''); delStart.focus(); }
    };
    delStart.addEventListener('click', function () { openDelete(delForm.hidden); });
    document.getElementById('user-delete-cancel').addEventListener('click', function () { openDelete(false); });
    delForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (delInput.value.trim() !== delForm.getAttribute('data-confirm')) {
        show(delOut, false, delForm.getAttribute('data-mismatch'));
        delInput.focus();
        return;
      }
      delSubmit.disabled = true;
      api('DELETE', 'api/v1/users/' + encodeURIComponent(delForm.getAttribute('data-user-id'))).then(function (res) {
        delSubmit.disabled = false;
        if (!res.ok) { show(delOut, false, errorText(res)); return; }
        try { window.sessionStorage.setItem('owmon-notice', delForm.getAttribute('data-notice')); } catch (e) { /* none */ }
        window.location.href = base + 'users';
      }, function (err) {
        delSubmit.disabled = false;
        show(delOut, false, String(err));
      });
    });
  }

  // Restore a backup: check the file (the import's preview mode: what it
  // brings and what it replaces), then replace on an explicit confirmation,
  // then show what was restored and where the previous data was saved.
  var restoreForm = document.getElementById('restore-form');
  if (restoreForm) {
    var rFile = document.getElementById('restore-file');
    var rStatus = document.getElementById('restore-status');
    var rError = document.getElementById('restore-error');
    var rPreview = document.getElementById('restore-preview');
    var rDone = document.getElementById('restore-done');
    var rConfirm = document.getElementById('restore-confirm');
    var said = function (name) { return restoreForm.getAttribute('data-' + name) || ''; };
    var checked = null; // the text of the file the preview is about
    var reset = function () {
      checked = null;
      rError.hidden = true;
      rPreview.hidden = true;
      rStatus.textContent = '';
      rStatus.classList.remove('ok', 'bad');
    };
    var fail = function (text) {
      reset();
      rError.textContent = text;
      rError.hidden = false;
    };
    // The answer to a bad file, in words: what is wrong with it.
    var failure = function (res) {
      var d = res.data || {};
      if (res.status === 400 && d.detail !== undefined) return said('notbackup') + ' ' + d.detail;
      if (res.status === 413) return said('toolarge');
      if (res.status === 422) return said('cannot') + ' ' + (d.error || '');
      return said('failed') + ' ' + (d.error || res.status);
    };
    var fill = function (box, data) {
      box.querySelectorAll('[data-count]').forEach(function (cell) {
        var path = cell.getAttribute('data-count').split('.');
        var v = data[path[0]] && data[path[0]][path[1]];
        cell.textContent = typeof v === 'number' ? v.toLocaleString() : '0';
      });
    };
    var when = function (box, name, on) {
      box.querySelectorAll('[data-when="' + name + '"]').forEach(function (el) { el.hidden = !on; });
    };
    var send = function (mode, text) {
      return fetch(base + 'api/v1/panel/database/import?mode=' + mode, {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: text
      }).then(function (resp) {
        return resp.text().then(function (t) {
          var data = {};
          try { data = JSON.parse(t); } catch (e) { data = { error: t }; }
          return { ok: resp.ok, status: resp.status, data: data };
        });
      });
    };
    var check = function () {
      reset();
      rDone.hidden = true;
      var file = rFile.files && rFile.files[0];
      if (!file) { fail(said('nofile')); return; }
      show(rStatus, true, said('checking'));
      file.text().then(function (text) {
        var top;
        try { top = JSON.parse(text); } catch (e) { fail(said('notbackup') + ' ' + said('notjson')); return; }
        if (!top || typeof top !== 'object' || Array.isArray(top) || typeof top.data !== 'object' || top.version === undefined) {
          fail(said('notbackup') + ' ' + said('notobject'));
          return;
        }
        return send('preview', text).then(function (res) {
          if (!res.ok || !res.data.preview) { fail(failure(res)); return; }
          rStatus.textContent = '';
          fill(rPreview, res.data);
          when(rPreview, 'replace', !!res.data.needs_replace);
          when(rPreview, 'empty', !res.data.needs_replace);
          document.getElementById('restore-file-name').textContent = file.name;
          checked = text;
          rPreview.hidden = false;
          rConfirm.focus();
        });
      }, function (err) { fail(said('unreadable') + ' ' + String(err)); })
        .catch(function (err) { fail(said('failed') + ' ' + String(err)); });
    };
    restoreForm.addEventListener('submit', function (ev) { ev.preventDefault(); check(); });
    rFile.addEventListener('change', check);
    document.getElementById('restore-cancel').addEventListener('click', function () { reset(); rFile.value = ''; rFile.focus(); });
    rConfirm.addEventListener('click', function () {
      if (checked === null) return;
      var text = checked;
      rConfirm.disabled = true;
      show(rStatus, true, said('working'));
      send('replace', text).then(function (res) {
        rConfirm.disabled = false;
        if (!res.ok) { fail(failure(res)); return; }
        reset();
        rFile.value = '';
        fill(rDone, res.data);
        document.getElementById('restore-backup-path').textContent = res.data.backup || '';
        when(rDone, 'saved', !!res.data.backup);
        when(rDone, 'unsaved', !res.data.backup);
        rDone.hidden = false;
      }, function (err) {
        rConfirm.disabled = false;
        fail(said('failed') + ' ' + String(err));
      });
    });
  }
})();
