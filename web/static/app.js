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

  function errorText(res) {
    return (res.data && res.data.error) || ('HTTP ' + res.status);
  }

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
        var out = form.querySelector('[data-result]');
        var button = form.querySelector('button[type=submit]');
        button.disabled = true;
        call.then(function (res) {
          button.disabled = false;
          if (res.ok) {
            show(out, true, savedText);
            window.location.reload();
          } else {
            show(out, false, errorText(res));
          }
        }, function (err) {
          button.disabled = false;
          show(out, false, String(err));
        });
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
          list.forEach(function (row) { show(row.querySelector('[data-result]'), false, errorText(res)); });
          show(summary, false, errorText(res));
          return;
        }
        (res.data.results || []).forEach(function (r, i) {
          var row = list[i];
          if (!row) return;
          show(row.querySelector('[data-result]'), r.success, r.success ? savedText : r.error);
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
      show(out, ok, ok ? ((testButton && testButton.getAttribute('data-ok')) || 'ok') : (res.data.message || errorText(res)));
      return ok;
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
      var done = 0, good = 0;
      testButton.disabled = true;
      var next = function () {
        show(toolbarResult, true, done + ' / ' + list.length);
        if (done === list.length) { testButton.disabled = false; return; }
        testRow(list[done]).then(function (ok) { done++; if (ok) good++; next(); });
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
})();
