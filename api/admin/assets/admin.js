/* etal back office: small, vanilla, no framework. Loaded in <head> (not deferred) so that the
 * date defaults below apply before the page paints; Chart.js (chart.umd.js, deferred) is ready
 * by DOMContentLoaded. */
(function () {
  'use strict';

  /* 1. Dates relative to today. A page whose GraphQL operation needs dates (GraphQL has no
   * "today") declares <meta name="etal-defaults" content='{"from": "-3m", "to": "0d"}'>: any of
   * those query parameters absent from the URL is filled (offsets in d, w, m, y from today,
   * local time) and the page reloaded once with them. */
  function isoDate(d) {
    var m = d.getMonth() + 1, day = d.getDate();
    return d.getFullYear() + '-' + (m < 10 ? '0' : '') + m + '-' + (day < 10 ? '0' : '') + day;
  }
  function relativeDate(spec) {
    var match = /^([+-]?\d+)([dwmy])$/.exec(String(spec).trim());
    if (!match) return String(spec); // a literal date
    var n = parseInt(match[1], 10), d = new Date();
    d.setHours(12, 0, 0, 0);
    switch (match[2]) {
      case 'd': d.setDate(d.getDate() + n); break;
      case 'w': d.setDate(d.getDate() + 7 * n); break;
      case 'm': d.setMonth(d.getMonth() + n); break;
      case 'y': d.setFullYear(d.getFullYear() + n); break;
    }
    return isoDate(d);
  }
  (function fillDefaults() {
    var meta = document.querySelector('meta[name="etal-defaults"]');
    if (!meta || !window.URLSearchParams) return;
    var defaults;
    try { defaults = JSON.parse(meta.getAttribute('content')); } catch (e) { return; }
    var params = new URLSearchParams(window.location.search), changed = false;
    Object.keys(defaults).forEach(function (name) {
      if (!params.get(name)) { params.set(name, relativeDate(defaults[name])); changed = true; }
    });
    if (changed) {
      window.location.replace(window.location.pathname + '?' + params.toString() + window.location.hash);
    }
  })();

  /* 2. Charts: <canvas class="chart" data-chart='{...}'>, the JSON being either Chart.js' own
   *   {"type": "bar", "labels": [...], "datasets": [{"label": "...", "data": [...]}]}
   * or rows with field names:
   *   {"type": "line", "rows": [{...}], "x": "S{isoWeek} {isoYear}",
   *    "datasets": [{"label": "Clients", "field": "customers"}], "money": true}
   * ("x": a field name or a template of {field} parts; "money": values are euros). */
  var palette = ['#2f6f4f', '#c4762b', '#3b6ea8', '#9b3b5a', '#6b6b2f', '#555555'];
  var money = window.Intl ? new Intl.NumberFormat('fr-FR', { style: 'currency', currency: 'EUR' }) : null;
  var number = window.Intl ? new Intl.NumberFormat('fr-FR') : null;

  function fmt(v, isMoney) {
    if (isMoney) return money ? money.format(v) : v.toFixed(2).replace('.', ',') + ' €';
    return number ? number.format(v) : String(v);
  }
  function label(row, x) {
    if (x.indexOf('{') < 0) return String(row[x]);
    return x.replace(/\{(\w+)\}/g, function (_, k) { return row[k] == null ? '' : String(row[k]); });
  }
  function toNumber(v) {
    if (v == null || v === '') return null;
    var n = typeof v === 'number' ? v : parseFloat(String(v).replace(',', '.'));
    return isNaN(n) ? null : n;
  }
  function buildConfig(spec) {
    var type = spec.type === 'line' ? 'line' : 'bar';
    var labels = spec.labels || [];
    var rows = spec.rows || null;
    if (rows) labels = rows.map(function (r) { return label(r, spec.x || 'label'); });
    var datasets = (spec.datasets || []).map(function (ds, i) {
      var data = rows && ds.field ? rows.map(function (r) { return toNumber(r[ds.field]); })
                                  : (ds.data || []).map(toNumber);
      var color = ds.color || palette[i % palette.length];
      return {
        label: ds.label || '',
        data: data,
        backgroundColor: type === 'bar' ? color : color + '33',
        borderColor: color,
        borderWidth: type === 'bar' ? 0 : 2,
        pointRadius: type === 'line' ? 2 : undefined,
        tension: 0.2,
        fill: type === 'line' && !!spec.fill
      };
    });
    var isMoney = !!spec.money;
    return {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: { display: datasets.length > 1 },
          title: { display: !!spec.title, text: spec.title || '' },
          tooltip: { callbacks: { label: function (ctx) {
            return (ctx.dataset.label ? ctx.dataset.label + ' : ' : '') + fmt(ctx.parsed.y, isMoney);
          } } }
        },
        scales: {
          x: { ticks: { autoSkip: true, maxRotation: 0 } },
          y: { beginAtZero: true, ticks: { precision: isMoney ? undefined : 0,
               callback: function (v) { return fmt(v, isMoney); } } }
        }
      }
    };
  }
  function drawCharts() {
    var canvases = document.querySelectorAll('canvas.chart[data-chart]');
    Array.prototype.forEach.call(canvases, function (canvas) {
      var spec;
      try { spec = JSON.parse(canvas.getAttribute('data-chart')); } catch (e) { return; }
      var config = buildConfig(spec);
      var empty = !config.data.labels.length;
      if (empty || typeof window.Chart !== 'function') {
        var p = document.createElement('p');
        p.className = 'chart-empty';
        p.textContent = empty ? 'Aucune donnée sur la période.' : 'Graphique indisponible.';
        canvas.parentNode.insertBefore(p, canvas);
        canvas.hidden = true;
        return;
      }
      canvas.setAttribute('role', 'img');
      if (!canvas.getAttribute('aria-label')) {
        canvas.setAttribute('aria-label', config.data.datasets.map(function (d) { return d.label; }).join(', '));
      }
      canvas._etalChart = new window.Chart(canvas, config);
    });
  }

  /* 3. Forms: data-confirm asks first; a submitted form's buttons are disabled (no double
   * submission); [data-print] buttons print the page. */
  function wireForms() {
    document.addEventListener('submit', function (ev) {
      var form = ev.target;
      var msg = form.getAttribute('data-confirm');
      if (msg && !window.confirm(msg)) { ev.preventDefault(); return; }
      if ((form.getAttribute('method') || 'get').toLowerCase() === 'post') {
        // after this event the browser has taken the fields (and the clicked button's value)
        setTimeout(function () {
          Array.prototype.forEach.call(form.querySelectorAll('button, input[type=submit]'), function (b) { b.disabled = true; });
        }, 0);
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-print]'), function (b) {
      b.addEventListener('click', function () { window.print(); });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    wireForms();
    drawCharts();
  });
})();
