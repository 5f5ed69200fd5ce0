// The Budgets page: add and delete limits and grants, sync OpenWebUI's
// groups, each through the JSON API with the session cookie and the CSRF
// token, as app.js does for the other pages.
(function () {
  'use strict';
  var root = document.getElementById('budgets');
  if (!root) return;
  // The API call, messages and field-labelled errors of app.js, which
  // runs first (both are deferred, app.js earlier in the page).
  var api = window.owmon.api, show = window.owmon.show, errorText = window.owmon.errorText;
  var submit = window.owmon.submit;

  // The scope chooser: a user id, a synced group, a role, or everyone.
  function toggle(form, attr, value) {
    form.querySelectorAll('[' + attr + ']').forEach(function (el) {
      el.hidden = el.getAttribute(attr) !== value;
    });
  }
  function scopeOf(form) {
    var f = form.elements;
    switch (f.scope_kind.value) {
      case 'all': return 'all';
      case 'group': return 'group:' + (f.scope_group.value || '');
      case 'role': return 'role:' + f.scope_role.value;
    }
    return 'user:' + f.scope_user.value.trim();
  }
  root.querySelectorAll('form[data-scope-form]').forEach(function (form) {
    var kind = form.elements.scope_kind;
    var sync = function () { toggle(form, 'data-scope-for', kind.value); };
    kind.addEventListener('change', sync);
    sync();
  });

  var limitForm = document.getElementById('limit-form');
  if (limitForm) {
    limitForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = limitForm.elements;
      var models = f.models.value.split(',').map(function (s) { return s.trim(); }).filter(Boolean);
      submit(limitForm, api('POST', 'api/v1/limits', {
        scope: scopeOf(limitForm), measure: f.measure.value, amount: f.amount.value.trim(),
        window: f.window.value.trim(), models: models, shared: f.shared.checked
      }));
    });
  }

  var grantForm = document.getElementById('grant-form');
  if (grantForm) {
    var mode = grantForm.elements.mode;
    var syncMode = function () { toggle(grantForm, 'data-mode-for', mode.value); };
    mode.addEventListener('change', syncMode);
    syncMode();
    grantForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = grantForm.elements;
      var body = { scope: scopeOf(grantForm), mode: f.mode.value, amount: f.amount.value.trim(), window: f.window.value };
      if (f.mode.value === 'add') body.cap = f.cap.value.trim();
      submit(grantForm, api('POST', 'api/v1/grants', body));
    });
  }

  // Delete a limit or a grant.
  root.querySelectorAll('button[data-delete]').forEach(function (button) {
    button.addEventListener('click', function () {
      var out = button.parentNode.querySelector('[data-result]');
      button.disabled = true;
      api('DELETE', 'api/v1/' + button.getAttribute('data-delete') + '/' + encodeURIComponent(button.getAttribute('data-id'))).then(function (res) {
        button.disabled = false;
        if (res.ok) { window.location.reload(); } else { show(out, false, errorText(res)); }
      }, function (err) {
        button.disabled = false;
        show(out, false, String(err));
      });
    });
  });

  // Sync OpenWebUI's groups now.
  var syncButton = document.getElementById('groups-sync');
  if (syncButton) {
    syncButton.addEventListener('click', function () {
      var out = document.getElementById('groups-sync-result');
      syncButton.disabled = true;
      api('POST', 'api/v1/groups/sync', {}).then(function (res) {
        syncButton.disabled = false;
        if (!res.ok) { show(out, false, errorText(res)); return; }
        show(out, true, (syncButton.getAttribute('data-done') || '{n}').replace('{n}', String(res.data.groups)));
        window.location.reload();
      }, function (err) {
        syncButton.disabled = false;
        show(out, false, String(err));
      });
    });
  }
})();
