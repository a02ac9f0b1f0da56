// rds-gateway status page: polls status.json (same origin) every 2 s and draws it. Every number shown is
// also in an element's data-value (the raw value from status.json), which the browser test compares.
(function () {
  'use strict';
  const POLL_MS = 2000;
  const COLORS = {
    s2xx: '#1f9d55', s3xx: '#2f6fde', s4xx: '#d08700', s429: '#8e44ad', s5xx: '#d0342c',
    saved: '#1f9d55', fetches: '#2f6fde', ratio: '#1d2330', p50: '#2f6fde', p99: '#d0342c',
  };
  const el = (id) => document.querySelector('[data-testid="' + id + '"]');

  // Shows `text` and keeps the raw value in data-value ('' for null).
  function show(id, value, text) {
    const e = el(id);
    if (!e) return;
    e.dataset.value = value === null || value === undefined ? '' : String(value);
    e.textContent = text === undefined ? fmtInt(value) : text;
  }

  function fmtInt(v) {
    if (v === null || v === undefined) return '–';
    return Number(v).toLocaleString('en-US');
  }
  function fmtPct(v) {
    if (v === null || v === undefined) return '–';
    const p = v * 100;
    return (p >= 99.95 || p === 0 ? p.toFixed(0) : p < 1 ? p.toFixed(2) : p.toFixed(1)) + ' %';
  }
  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + ' ms';
  }
  function fmtBytes(v) {
    if (v === null || v === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = Number(v);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i === 0 ? x.toFixed(0) : x.toFixed(1)) + ' ' + units[i];
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return '–';
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function fmtRate(v) {
    if (v === null || v === undefined) return '–';
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  function fmtWindow(s) {
    return s % 60 === 0 ? (s / 60) + ' min' : s + ' s';
  }

  // ------------------------------------------------------------------------------------------- tiles

  function tiles(d) {
    const r = d.recent, t = d.total, rates = d.rates, up = d.upstream;
    show('version', d.version, d.version);
    show('uptime', d.uptime_s, fmtDuration(d.uptime_s));
    show('window', d.window_s, fmtWindow(d.window_s));
    document.querySelectorAll('.window').forEach((w) => { w.textContent = '(last ' + fmtWindow(d.window_s) + ')'; });
    show('rate', rates.requests_per_s, fmtRate(rates.requests_per_s));
    show('requests-recent', r.requests);
    show('requests-total', t.requests);
    mix(r);
    show('hit-ratio', rates.hit_ratio, fmtPct(rates.hit_ratio));
    show('calls-saved', rates.upstream_calls_saved);
    show('calls-saved-total', rates.upstream_calls_saved_total);
    show('hits-total', t.cache.HIT);
    show('misses-total', t.cache.MISS);
    show('coalesced-total', t.cache.COALESCED);
    show('stale-total', t.cache.STALE);
    show('latency-p50', up.latency_ms.p50, fmtMs(up.latency_ms.p50));
    show('latency-p99', up.latency_ms.p99, fmtMs(up.latency_ms.p99));
    show('latency-samples', up.latency_ms.samples);
    show('attempts-per-fetch', up.attempts_per_fetch,
      up.attempts_per_fetch === null ? '–' : up.attempts_per_fetch.toFixed(2));
    show('attempts-total', t.upstream_attempts);
    breakers(up.breakers);
    credential(d.credential);
    const c = d.cache;
    show('cache-entries', c.enabled ? c.entries : null, c.enabled ? fmtInt(c.entries) : 'off');
    show('cache-bytes', c.enabled ? c.bytes : null, c.enabled ? fmtBytes(c.bytes) : '–');
    show('cache-max-bytes', c.max_bytes, fmtBytes(c.max_bytes));
    show('cache-fill', c.max_entries ? c.entries / c.max_entries : null,
      c.max_entries ? fmtPct(c.entries / c.max_entries) : '–');
    show('waiters', c.singleflight_waiters);
    show('error-ratio', rates.error_ratio_5xx, fmtPct(rates.error_ratio_5xx));
    tone(el('error-ratio'), rates.error_ratio_5xx, 0.01, 0.05);
    show('s5xx-recent', r.status['5xx']);
    show('throttled-recent', r.throttled);
    show('throttled-total', t.throttled);
    const reasons = Object.entries(up.answers_refused_total);
    const refused = reasons.reduce((n, kv) => n + kv[1], 0);
    show('refused-total', refused);
    tone(el('refused-total'), refused, 1, 1);
    show('refused-reasons', reasons.map((kv) => kv[0] + '=' + kv[1]).join(','),
      reasons.length ? reasons.map((kv) => kv[0] + ' ' + fmtInt(kv[1])).join(' · ') : 'none since start');
    show('log-dropped', d.access_log.dropped_lines_total);
    const banner = el('banner');
    banner.hidden = !d.draining;
    banner.textContent = d.draining ? 'This instance is draining (shutting down): readiness is 503.' : '';
  }

  function tone(e, v, warnAt, badAt) {
    e.classList.remove('good', 'warn', 'bad');
    if (v === null || v === undefined) return;
    e.classList.add(v >= badAt ? 'bad' : v >= warnAt ? 'warn' : 'good');
  }

  function mix(r) {
    const box = el('mix');
    box.replaceChildren();
    const parts = [['2xx', COLORS.s2xx], ['3xx', COLORS.s3xx], ['4xx', COLORS.s4xx], ['429', COLORS.s429],
      ['5xx', COLORS.s5xx]];
    const total = parts.reduce((n, p) => n + r.status[p[0]], 0);
    box.title = parts.map((p) => p[0] + ': ' + r.status[p[0]]).join(', ');
    if (!total) return;
    for (const [k, color] of parts) {
      if (!r.status[k]) continue;
      const s = document.createElement('span');
      s.style.width = (100 * r.status[k] / total) + '%';
      s.style.background = color;
      box.appendChild(s);
    }
  }

  function breakers(list) {
    const ul = el('breakers');
    ul.replaceChildren();
    ul.dataset.value = list.map((b) => b.region + '=' + b.state).join(',');
    for (const b of list) {
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.textContent = b.region;
      const pill = document.createElement('span');
      pill.className = 'pill ' + b.state;
      pill.textContent = b.state;
      pill.dataset.testid = 'breaker-' + b.region;
      pill.dataset.value = b.state;
      li.append(name, pill);
      ul.appendChild(li);
    }
  }

  function credential(c) {
    let text, cls;
    if (c.expiry === 'never') { text = 'no expiry'; cls = 'good'; }
    else if (c.expiry === 'none') { text = 'none'; cls = 'bad'; }
    else {
      text = 'expires in ' + fmtDuration(c.seconds_to_expiry);
      cls = c.seconds_to_expiry < 1800 ? 'bad' : c.seconds_to_expiry < 7200 ? 'warn' : 'good';
    }
    show('credential-expiry', c.expiry === 'at' ? c.seconds_to_expiry : c.expiry, text);
    const e = el('credential-expiry');
    e.classList.remove('good', 'warn', 'bad');
    e.classList.add(cls);
    show('credential-kind', c.kind, c.kind);
    show('credential-ready', c.ready, c.ready ? 'usable' : 'not usable');
    show('credential-reason', c.reason || '', c.reason || '');
  }

  // -------------------------------------------------------------------------------------------- tables

  function table(id, rows, first) {
    const body = el(id);
    body.replaceChildren();
    body.dataset.value = rows.map((c) => c.name + '=' + c[first]).join(',');
    if (!rows.length) {
      const tr = body.insertRow();
      const td = tr.insertCell();
      td.colSpan = 4;
      td.className = 'empty';
      td.textContent = first === 'throttled' ? 'no caller throttled' : 'no caller requests';
      return;
    }
    const second = first === 'requests' ? 'throttled' : 'requests';
    for (const c of rows) {
      const tr = body.insertRow();
      tr.insertCell().textContent = c.name;
      tr.insertCell().textContent = fmtInt(c[first]);
      tr.insertCell().textContent = fmtInt(c[second]);
      tr.insertCell().textContent = fmtInt(c[first + '_total']);
    }
  }

  // -------------------------------------------------------------------------------------------- charts

  const charts = {};

  function labels(s) {
    const n = s.requests.length;
    const out = [];
    for (let i = 0; i < n; i++) {
      const t = new Date(s.end_ms - (n - 1 - i) * s.step_s * 1000);
      out.push(t.toTimeString().slice(0, 8));
    }
    return out;
  }

  function perSecond(arr, step) {
    return arr.map((v) => v / step);
  }

  function baseOptions(extra) {
    return Object.assign({
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      normalized: true,
      interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12, boxHeight: 12 } } },
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
    }, extra);
  }

  function makeCharts() {
    if (typeof Chart === 'undefined') return false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = '#677083';
    const ticks = { maxTicksLimit: 4, maxRotation: 0, autoSkipPadding: 16 };
    const area = (label, color) => ({ label, data: [], borderColor: color, backgroundColor: color + '99',
      fill: label === '2xx' ? 'origin' : '-1', stack: 's' });
    charts.requests = new Chart(document.getElementById('chart-requests'), {
      type: 'line',
      data: { labels: [], datasets: [area('2xx', COLORS.s2xx), area('3xx', COLORS.s3xx), area('4xx', COLORS.s4xx),
        area('429', COLORS.s429), area('5xx', COLORS.s5xx)] },
      options: baseOptions({ scales: { x: { ticks }, y: { stacked: true, beginAtZero: true,
        title: { display: true, text: 'req/s' } } } }),
    });
    charts.cache = new Chart(document.getElementById('chart-cache'), {
      data: { labels: [], datasets: [
        { type: 'line', label: 'hit ratio %', data: [], borderColor: COLORS.ratio, backgroundColor: COLORS.ratio,
          yAxisID: 'ratio', spanGaps: true, pointRadius: 2 },
        { type: 'bar', label: 'saved/s', data: [], backgroundColor: COLORS.saved + 'cc', yAxisID: 'rate' },
        { type: 'bar', label: 'fetches/s', data: [], backgroundColor: COLORS.fetches + 'cc', yAxisID: 'rate' },
      ] },
      options: baseOptions({ scales: { x: { ticks },
        rate: { position: 'left', beginAtZero: true, title: { display: true, text: 'per s' } },
        ratio: { position: 'right', min: 0, max: 100, grid: { drawOnChartArea: false },
          title: { display: true, text: '%' } } } }),
    });
    charts.latency = new Chart(document.getElementById('chart-latency'), {
      type: 'line',
      data: { labels: [], datasets: [
        { label: 'p50', data: [], borderColor: COLORS.p50, backgroundColor: COLORS.p50, spanGaps: true, pointRadius: 2 },
        { label: 'p99', data: [], borderColor: COLORS.p99, backgroundColor: COLORS.p99, spanGaps: true, pointRadius: 2 },
      ] },
      options: baseOptions({ scales: { x: { ticks }, y: { beginAtZero: true, title: { display: true, text: 'ms' } } } }),
    });
    return true;
  }

  // As many time labels as fit the chart's width (about 90 px each).
  function fitTicks(chart) {
    chart.options.scales.x.ticks.maxTicksLimit = Math.max(2, Math.floor(chart.width / 90));
  }

  function drawCharts(s) {
    if (!charts.requests && !makeCharts()) return;
    Object.values(charts).forEach(fitTicks);
    const lab = labels(s), step = s.step_s;
    const rq = charts.requests;
    rq.data.labels = lab;
    ['2xx', '3xx', '4xx', '429', '5xx'].forEach((k, i) => { rq.data.datasets[i].data = perSecond(s[k], step); });
    rq.update('none');
    const ca = charts.cache;
    ca.data.labels = lab;
    ca.data.datasets[0].data = s.hit_ratio.map((v) => (v === null ? null : v * 100));
    ca.data.datasets[1].data = s.hit.map((v, i) => (v + s.coalesced[i]) / step);
    ca.data.datasets[2].data = perSecond(s.fetches, step);
    ca.update('none');
    const la = charts.latency;
    la.data.labels = lab;
    la.data.datasets[0].data = s.p50_ms;
    la.data.datasets[1].data = s.p99_ms;
    la.update('none');
  }

  // ---------------------------------------------------------------------------------------------- poll

  function setLive(state, text) {
    const e = el('live');
    e.dataset.state = state;
    e.lastElementChild.textContent = text;
  }

  async function poll() {
    try {
      const res = await fetch('status.json', { cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) throw new Error('status.json answered HTTP ' + res.status);
      const d = await res.json();
      tiles(d);
      table('top-requests', d.callers.top_by_requests, 'requests');
      table('top-throttled', d.callers.top_by_throttled, 'throttled');
      drawCharts(d.series);
      show('updated', d.now_ms, new Date(d.now_ms).toTimeString().slice(0, 8));
      setLive('ok', 'live');
      document.body.dataset.loaded = 'true';
    } catch (err) {
      setLive('error', String(err.message || err));
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
