// runfeed demo page: subscribes to /realtime/v1 feeds the way the trigger.dev SDK's embedded
// @electric-sql/client 1.0.14 does, and renders each feed's runs as a live table.
//
// Protocol, per subscription (docs: README "Demo page", shared reference §4):
//   1. snapshot:  GET <path>?log=full&offset=-1
//   2. catch-up:  while no body has ended with the `up-to-date` control, repeat non-live with the
//                 electric-handle / electric-offset of the last response
//   3. live:      GET <path>?cursor=<electric-cursor>&handle=…&live=true&log=full&offset=…, re-issued
//                 as soon as each answer arrives (the server holds it until a row changes)
// Every 2xx must carry electric-handle and electric-offset, non-live ones electric-schema, live ones
// electric-cursor (a missing header is fatal, as in the client). Values are parsed with the schema;
// insert/update/delete messages are buffered and applied at each up-to-date (the batch boundary).
// 409 resets to a fresh snapshot at once; 429, 5xx and network errors are retried forever with a
// backoff of 100 ms × 1.3 per attempt, capped at 10 s; any other status ends the subscription.
//
// Plain browser JavaScript: no build step, no dependencies, same origin as the API.
'use strict';

(function () {
  const ELECTRIC_VERSION = '1.0.0-beta.1'; // any non-empty value selects the modern header names
  const API_VERSION = '2025-07-16';        // current API: DEQUEUED is sent as DEQUEUED
  const LIVE_ABORT_MS = 45000;             // newer clients abort a live request after 45 s
  const BACKOFF = { initialMs: 100, multiplier: 1.3, maxMs: 10000 };

  // ---------------------------------------------------------------------------------------------
  // Value parsing from electric-schema (as @electric-sql/client's parser does)

  function parsePgArray(text, parseElement) {
    let i = 0;
    function fail() {
      throw new Error('malformed array literal: ' + text);
    }
    function parseLevel() {
      if (text[i] !== '{') fail();
      i++;
      const out = [];
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        if (i >= text.length) fail();
        if (text[i] === '{') {
          out.push(parseLevel());
        } else if (text[i] === '"') {
          let s = '';
          i++;
          while (text[i] !== '"') {
            if (i >= text.length) fail();
            if (text[i] === '\\') i++;
            s += text[i++];
          }
          i++;
          out.push(parseElement(s));
        } else {
          let s = '';
          while (i < text.length && text[i] !== ',' && text[i] !== '}') s += text[i++];
          out.push(s === 'NULL' ? null : parseElement(s));
        }
        if (text[i] === ',') {
          i++;
        } else if (text[i] === '}') {
          i++;
          return out;
        } else {
          fail();
        }
      }
    }
    const result = parseLevel();
    if (i !== text.length) fail();
    return result;
  }

  function scalarParser(type) {
    switch (type) {
      case 'int2':
      case 'int4':
      case 'float4':
      case 'float8':
        return (v) => Number(v);
      case 'int8':
        return (v) => BigInt(v);
      case 'bool':
        return (v) => v === 't' || v === 'true';
      case 'json':
      case 'jsonb':
        return (v) => JSON.parse(v);
      default:
        return (v) => v; // text, timestamp, enums…: kept as strings
    }
  }

  function makeRowParser(schema) {
    const parsers = {};
    for (const [column, info] of Object.entries(schema)) {
      const scalar = scalarParser(info.type);
      parsers[column] = info.dims > 0 ? (v) => parsePgArray(v, scalar) : scalar;
    }
    return (value) => {
      const out = {};
      for (const [column, raw] of Object.entries(value)) {
        const p = parsers[column];
        out[column] = raw === null || raw === undefined ? null : p ? p(raw) : raw;
      }
      return out;
    };
  }

  // ---------------------------------------------------------------------------------------------
  // One shape subscription

  class FatalError extends Error {}

  class ShapeFeed {
    // path: '/realtime/v1/runs/run_…' or '/realtime/v1/runs'; params: the route's own query
    // (tags, createdAt); onChange(feed) after every applied batch and state change.
    constructor({ path, params, token, onChange }) {
      this.path = path;
      this.params = params || {};
      this.token = token;
      this.onChange = onChange || (() => {});
      this.rows = new Map(); // message key → parsed row
      this.state = 'idle';   // idle, snapshot, catch-up, live, retrying, error, stopped
      this.detail = '';
      this.stats = { requests: 0, snapshots: 0, liveResponses: 0, batches: 0, retries: 0, refetches: 0 };
      this.lastChangeAt = null;
      this.changedKeys = new Set();
      this.#reset();
    }

    #handle = null;
    #offset = '-1';
    #cursor = '';
    #upToDate = false;
    #schema = null;
    #parse = null;
    #buffer = [];
    #stopped = false;
    #abort = null;
    #attempt = 0;

    #reset() {
      this.#offset = '-1';
      this.#cursor = '';
      this.#upToDate = false;
      this.#schema = null;
      this.#parse = null;
      this.#buffer = [];
    }

    start() {
      this.#stopped = false;
      this.#loop();
      return this;
    }

    stop() {
      this.#stopped = true;
      if (this.#abort) this.#abort.abort();
      this.#setState('stopped');
    }

    rowsArray() {
      return Array.from(this.rows.values());
    }

    #setState(state, detail) {
      this.state = state;
      this.detail = detail || '';
      this.onChange(this);
    }

    #url(live) {
      const q = Object.assign({}, this.params);
      q.log = 'full';
      q.offset = this.#offset;
      if (this.#handle !== null) q.handle = this.#handle; // none on the very first request
      if (live) {
        q.live = 'true';
        q.cursor = this.#cursor;
      }
      // The client sorts all query parameters (cache-friendly URLs).
      const sorted = new URLSearchParams();
      for (const k of Object.keys(q).sort()) sorted.set(k, q[k]);
      return this.path + '?' + sorted.toString();
    }

    async #loop() {
      while (!this.#stopped) {
        const live = this.#upToDate;
        if (!live) this.#setState(this.#offset === '-1' ? 'snapshot' : 'catch-up');
        let response;
        let text;
        this.#abort = new AbortController();
        const timer = live ? setTimeout(() => this.#abort.abort(), LIVE_ABORT_MS) : null;
        try {
          this.stats.requests++;
          response = await fetch(this.#url(live), {
            headers: {
              Authorization: 'Bearer ' + this.token,
              'x-trigger-electric-version': ELECTRIC_VERSION,
              'x-trigger-api-version': API_VERSION,
            },
            cache: 'no-store',
            signal: this.#abort.signal,
          });
          text = await response.text();
        } catch (err) {
          if (this.#stopped) return;
          await this.#backoff('network: ' + (err && err.name === 'AbortError' ? 'live request aborted' : err.message));
          continue;
        } finally {
          if (timer) clearTimeout(timer);
        }

        const status = response.status;
        if (status === 409) {
          // must-refetch: a new handle (or `<old>-next`), a fresh snapshot at once, state cleared.
          this.stats.refetches++;
          this.#handle = response.headers.get('electric-handle') || (this.#handle ? this.#handle + '-next' : null);
          this.#reset();
          this.rows.clear();
          this.#publish();
          continue;
        }
        if (status === 429 || status >= 500) {
          await this.#backoff('HTTP ' + status);
          continue;
        }
        if (status < 200 || status > 299) {
          this.#fail('HTTP ' + status + ': ' + text.slice(0, 200));
          return;
        }

        try {
          this.#receive(response, text, live);
        } catch (err) {
          this.#fail(err.message);
          return;
        }
        this.#attempt = 0;
        if (this.#upToDate) this.#setState('live', live ? 'held poll answered' : 'snapshot done');
      }
    }

    #receive(response, text, live) {
      const h = response.headers;
      const missing = [];
      if (!h.has('electric-handle')) missing.push('electric-handle');
      if (!h.has('electric-offset')) missing.push('electric-offset');
      if (live && !h.has('electric-cursor')) missing.push('electric-cursor');
      if (!live && !h.has('electric-schema')) missing.push('electric-schema');
      if (missing.length) throw new FatalError('missing response headers: ' + missing.join(', '));

      this.#handle = h.get('electric-handle');
      this.#offset = h.get('electric-offset');
      if (live) {
        this.#cursor = h.get('electric-cursor');
        this.stats.liveResponses++;
      } else {
        this.stats.snapshots++;
      }
      if (this.#schema === null && h.has('electric-schema')) {
        this.#schema = JSON.parse(h.get('electric-schema')); // cached until a reset
        this.#parse = makeRowParser(this.#schema);
      }

      const messages = text === '' ? [] : JSON.parse(text);
      if (!Array.isArray(messages)) throw new FatalError('body is not a JSON array');
      for (const m of messages) {
        if (m && typeof m.key === 'string') {
          const value = this.#parse ? this.#parse(m.value || {}) : m.value || {};
          this.#buffer.push({ key: m.key, value, operation: m.headers && m.headers.operation });
          continue;
        }
        const control = m && m.headers && m.headers.control;
        if (control === 'up-to-date') {
          this.#upToDate = true;
          this.#applyBuffer();
        } else if (control === 'must-refetch') {
          this.#buffer = [];
          this.rows.clear();
          this.#reset();
          this.#publish();
          return;
        }
      }
    }

    #applyBuffer() {
      const changed = new Set();
      for (const { key, value, operation } of this.#buffer) {
        if (operation === 'delete') {
          this.rows.delete(key);
        } else if (operation === 'update' && this.rows.has(key)) {
          this.rows.set(key, Object.assign({}, this.rows.get(key), value));
        } else {
          this.rows.set(key, value);
        }
        changed.add(key);
      }
      this.#buffer = [];
      this.stats.batches++;
      if (changed.size) this.lastChangeAt = new Date();
      this.changedKeys = changed;
      this.#publish();
    }

    #publish() {
      this.onChange(this);
    }

    async #backoff(reason) {
      const delay = Math.min(BACKOFF.initialMs * Math.pow(BACKOFF.multiplier, this.#attempt), BACKOFF.maxMs);
      this.#attempt++;
      this.stats.retries++;
      this.#setState('retrying', reason + ' — retry in ' + Math.round(delay) + ' ms');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }

    #fail(reason) {
      this.#stopped = true;
      this.#setState('error', reason);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Page

  const STATUS_CLASS = {
    DELAYED: 'queued', PENDING: 'queued', PENDING_VERSION: 'queued', WAITING_FOR_DEPLOY: 'queued',
    DEQUEUED: 'dequeued', EXECUTING: 'executing', RETRYING_AFTER_FAILURE: 'executing',
    WAITING_TO_RESUME: 'waiting', PAUSED: 'waiting',
    COMPLETED_SUCCESSFULLY: 'success',
    COMPLETED_WITH_ERRORS: 'failure', SYSTEM_FAILURE: 'failure', CRASHED: 'failure',
    CANCELED: 'ended', INTERRUPTED: 'ended', EXPIRED: 'ended', TIMED_OUT: 'ended',
  };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') node.textContent = v;
      else if (k === 'className') node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function time(ts) {
    // Zone-less UTC timestamps (`2026-06-11T08:15:02.120`); show the time of day.
    return ts ? String(ts).replace(/^.*T/, '') : '—';
  }

  function duration(ms) {
    if (typeof ms !== 'number' || !ms) return '—';
    return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
  }

  function cost(cents) {
    return typeof cents === 'number' && cents ? cents.toFixed(4) + '¢' : '—';
  }

  function renderFeed(panel, feed) {
    const state = panel.querySelector('.state');
    state.textContent = feed.state;
    state.className = 'state state-' + feed.state;
    state.title = feed.detail;
    panel.dataset.state = feed.state;
    panel.querySelector('.detail').textContent = feed.detail;

    const rows = feed.rowsArray();
    rows.sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt))); // newest first, as the SDK
    const tbody = panel.querySelector('tbody');
    const flash = feed.changedKeys;
    feed.changedKeys = new Set();
    tbody.replaceChildren(
      ...rows.map((r) => {
        const key = '"public"."TaskRun"/"' + r.id + '"';
        const tr = el('tr', { 'data-run': r.friendlyId, 'data-status': r.status }, [
          el('td', {}, [el('code', { text: r.friendlyId })]),
          el('td', { text: r.taskIdentifier || '' }),
          el('td', {}, [
            el('span', {
              className: 'status status-' + (STATUS_CLASS[r.status] || 'other'),
              text: r.status,
              title: r.error && typeof r.error === 'object' ? [r.error.name, r.error.message].filter(Boolean).join(': ') : '',
            }),
          ]),
          el('td', { className: 'num', text: duration(r.usageDurationMs) }),
          el('td', { className: 'num', text: cost(r.costInCents) }),
          el('td', { className: 'num', 'data-col': 'updatedAt', title: r.updatedAt + 'Z', text: time(r.updatedAt) }),
        ]);
        if (flash.has(key)) tr.className = 'flash';
        return tr;
      })
    );
    if (!rows.length) {
      tbody.append(el('tr', { className: 'empty' }, [el('td', { colspan: '6', text: feed.state === 'live' ? 'no runs' : '…' })]));
    }
    const s = feed.stats;
    panel.querySelector('.stats').textContent =
      `${rows.length} run(s) · ${s.requests} request(s): ${s.snapshots} non-live, ${s.liveResponses} live` +
      (s.retries ? ` · ${s.retries} retried` : '') + (s.refetches ? ` · ${s.refetches} refetch` : '') +
      (feed.lastChangeAt ? ` · last change ${feed.lastChangeAt.toISOString().slice(11, 23)} UTC` : '');
  }

  function main() {
    const defaults = window.RUNFEED_DEMO || {};
    const query = new URLSearchParams(location.search);
    const pick = (name, fallback) => (query.has(name) ? query.get(name) : defaults[name] || fallback || '');
    const settings = {
      key: pick('key'),
      run: pick('run'),
      tag: pick('tag'),
      createdAt: pick('createdAt', '1h'),
    };

    const form = document.getElementById('settings');
    for (const name of Object.keys(settings)) form.elements[name].value = settings[name];
    document.getElementById('origin').textContent = location.origin;

    const feeds = {};
    const template = document.getElementById('feed-template');
    const container = document.getElementById('feeds');

    function addFeed(name, title, path, params) {
      const panel = template.content.firstElementChild.cloneNode(true);
      panel.id = name + '-feed';
      panel.querySelector('h2').textContent = title;
      const qs = new URLSearchParams(params).toString();
      panel.querySelector('.path').textContent = 'GET ' + path + (qs ? '?' + qs : '');
      container.append(panel);
      const feed = new ShapeFeed({ path, params, token: settings.key, onChange: (f) => renderFeed(panel, f) });
      feeds[name] = feed;
      renderFeed(panel, feed);
      feed.start();
    }

    const notice = document.getElementById('notice');
    if (!settings.key) {
      notice.textContent = 'No token: pass ?key=<secret key or public access token> (stack.sh writes one into /demo/config.js).';
      notice.hidden = false;
    } else if (!settings.run && !settings.tag) {
      notice.textContent = 'Nothing to subscribe to: pass ?run=<run_…> and/or ?tag=<tag>.';
      notice.hidden = false;
    } else {
      if (settings.run) addFeed('run', 'Run ' + settings.run, '/realtime/v1/runs/' + encodeURIComponent(settings.run), {});
      if (settings.tag) {
        addFeed('tag', 'Tag ' + settings.tag, '/realtime/v1/runs', { tags: settings.tag, createdAt: settings.createdAt });
      }
    }
    window.runfeedDemo = { feeds, settings, ShapeFeed, parsePgArray };
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
  else main();
})();
