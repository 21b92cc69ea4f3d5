/* calltracker widget: dynamic number insertion, see widget/README.md */
((w, d) => {
  'use strict';
  const prev = w.calltracker;
  if (prev?.number) return; // loaded twice: the first copy runs
  const cbs = Array.isArray(prev) ? [...prev] : []; // queued onNumber callbacks
  const skip = /^(script|style|noscript|textarea)$/i, S = '[\\s().\\u2010-\\u2015-]{0,3}', TEL = 'a[href^="tel:" i]';
  const nd = (s) => String(s || '').replace(/\D/g, ''), no = () => {};
  let cur = null, st, re, nsns, nsn, sel, all, mo, timer, busy;

  const fire = (cb) => { try { cb({ ...cur }) } catch (e) {} };
  w.calltracker = {
    number: () => cur && cur.number,
    onNumber(cb) { cbs.push(cb); cur && fire(cb) },
  };

  // E.164 -> [country code, national number, trunk prefix]
  const parts = (e) => {
    const x = nd(e), c = (x.match(/^([17]|2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58])/) || [x.slice(0, 3)])[0];
    return [c, x.slice(c.length), c == 7 ? '8' : c == 1 ? '1' : '0'];
  };
  const dj = (s) => s.split('').join(S);
  const pat = (e) => {
    const [c, n, t] = parts(e);
    return '(?:(?:\\+|00)' + S + dj(c) + '(?:' + S + t + ')?|' + t + ')?' + S + dj(n);
  };
  // only digits change: the page's format stays
  const fill = (tpl, ds) => {
    let i = 0, k = nd(tpl).length;
    return tpl.replace(/\d/g, () => (++i < k ? ds[i - 1] || '' : ds.slice(i - 1)));
  };
  const rep = (s) => s.replace(re, (m, pre, b) => {
    const ds = nd(b);
    return pre + fill(b, ds.slice(0, ds.length - nsns.find((n) => ds.endsWith(n)).length) + nsn);
  });

  const set = (n, v) => { n.data !== v && (n.data = v) };
  const texts = (root) => {
    const out = [], tw = d.createTreeWalker(root, 4);
    for (let n; (n = tw.nextNode());) skip.test(n.parentNode.nodeName) || out.push(n);
    return out;
  };
  // finds a number split over several text nodes
  const whole = (el, force) => {
    const ns = texts(el), o = ns.map((n) => n.data).join(''), x = nd(o).length - nsn.length;
    let v = rep(o), p = 0;
    if (force && o.search(re) < 0) v = x >= 0 && x < 3 ? fill(o, nd(o).slice(0, x) + nsn) : cur.display;
    if (v === o) return;
    if (v.length !== o.length) return void (el.textContent = v);
    for (const n of ns) set(n, v.substr(p, n.data.length)), (p += n.data.length);
  };
  const fix = (el) => {
    if (el.matches(TEL)) {
      const h = el.getAttribute('href'), v = rep(h);
      v !== h && el.setAttribute('href', v);
      whole(el);
    }
    sel && el.matches(sel) && whole(el, 1);
  };
  const scan = (n) => {
    if (n.nodeType === 3) return skip.test(n.parentNode?.nodeName) || set(n, rep(n.data));
    if (n.nodeType !== 1 || skip.test(n.nodeName)) return;
    texts(n).forEach((t) => set(t, rep(t.data)));
    [n, ...n.querySelectorAll(all)].forEach(fix);
  };
  // our own writes are not observed
  const run = (f) => {
    mo.disconnect();
    try { f() } catch (e) {}
    mo.observe(d.documentElement, { childList: 1, subtree: 1, characterData: 1, attributeFilter: ['href'] });
  };

  const show = (v) => {
    const was = cur?.number, nums = [v.number, v.default_number, ...(v.olds ||= [])].filter((x) => nd(x).length > 5);
    st = v;
    try { sessionStorage[key] = JSON.stringify(v) } catch (e) {}
    cur = { number: v.number, display: v.display, kind: v.kind };
    nsns = nums.map((x) => parts(x)[1]);
    nsn = nsns[0];
    re = RegExp('(^|[^\\d+])(' + nums.map(pat).join('|') + ')(?!\\d)', 'g');
    sel = [script.dataset.ctSelectors, ...(v.selectors || [])].filter((x) => {
      try { return x && (d.querySelector(x), 1) } catch (e) {}
    }).join();
    all = TEL + (sel && ',' + sel);
    mo = mo || new MutationObserver((rs) => run(() => rs.forEach((r) => {
      const t = r.target, a = (t.closest ? t : t.parentElement)?.closest(all);
      r.type == 'childList' ? r.addedNodes.forEach(scan) : scan(t);
      a && fix(a);
    })));
    run(() => scan(d.documentElement));
    was !== v.number && cbs.forEach(fire);
  };
  const move = (number, o) => show({ ...st, number, display: fill(st.display, nd(number)), ...o, olds: [st.number, ...st.olds].slice(0, 5) });

  const ck = (n) => d.cookie.match('(?:^|; )' + n + '=([^;]*)')?.[1];
  const ls = (k, v) => { try { return v ? localStorage.setItem(k, v) || 1 : localStorage.getItem(k) } catch (e) {} };
  // a string body is text/plain: no CORS preflight
  const post = (path, body) => fetch(api + path, { method: 'POST', body: JSON.stringify({ site_key: site, ...body }), signal: AbortSignal.timeout(2000) })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)));
  const vpath = (p) => 'visits/' + st.visit_id + p;
  const visit = () => busy || (busy = post('visits', {
    visitor_id: ls('ct_vid') || ck('ct_vid'),
    url: location.href,
    referrer: d.referrer || void 0,
    ga_client_id: (ck('_ga') || '').split('.').slice(-2).join('.') || void 0,
    ym_client_id: ck('_ym_uid'),
    ga_sessions: d.cookie.match(/_ga_\w+=[^;]+/g)?.join(' '),
  }).then((v) => {
    ls('ct_vid', v.visitor_id) || (d.cookie = 'ct_vid=' + encodeURIComponent(v.visitor_id) + ';max-age=31536000;path=/;SameSite=Lax');
    v.landing = location.href;
    st ? move(v.number, v) : show({ ...v, olds: [] });
    tick();
  }).catch(() => {
    // expired: the number may be someone else's now
    if (st && st.number !== st.default_number) move(st.default_number, { kind: 'default', ttl: 0 });
    try { delete sessionStorage[key] } catch (e) {}
  }).finally(() => { busy = 0 }));

  const tick = (now) => {
    clearTimeout(timer);
    if (st && st.ttl > 0 && !d.hidden) timer = setTimeout(ping, now ? 0 : (+script.dataset.pingInterval || Math.max(15, st.ttl / 3)) * 1000);
  };
  const ping = () => post(vpath('/ping')).then((r) => {
    st.ttl = r.ttl;
    r.number && r.number !== st.number && move(r.number);
    tick();
  }, (e) => (e === 404 ? visit() : tick())).catch(no);

  const script = d.currentScript || d.querySelector('script[data-site]');
  const site = script?.dataset.site, key = 'ct_visit_' + site;
  let api, saved;
  try {
    if (!site) return;
    api = new URL('api/v1/', script.src).href;
    try { saved = JSON.parse(sessionStorage[key]) } catch (e) {}
    // a new ad click is a new visit, a reload is not
    if (saved && !(/[?&](utm_|\w*clid=)/.test(location.search) && saved.landing !== location.href)) {
      show(saved);
      tick(1);
    } else visit();
    d.addEventListener('visibilitychange', () => tick(!d.hidden));
    d.addEventListener('click', (e) => {
      try {
        if (!st || !e.target.closest(TEL)) return;
        const u = api + vpath('/events'), b = JSON.stringify({ site_key: site, type: 'phone_click' });
        navigator.sendBeacon(u, b) || fetch(u, { method: 'POST', body: b, keepalive: true }).catch(no);
      } catch (x) {}
    }, true);
  } catch (e) {}
})(window, document);
