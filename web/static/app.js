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
})();
