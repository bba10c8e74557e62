// The text of every plotly figure on a page that collides: two text elements (titles, axis
// titles, tick labels, legend entries, annotations, slider labels, text on traces) that overlap,
// a text that lies outside its figure, a text under the legend's or a colour bar's box, and a
// tick label of a log axis that is not the tick's value ("2" for 0.02). Run in the browser by
// tests/test_book_browser.py and tests/test_figure_layout.py; returns a list of problems.
const KINDS = [
  [/^(x|y)\d*tick$/, 'tick'], [/^g-(x|y)\d*title$/, 'axis title'], [/^g-gtitle$/, 'title'],
  [/^legend$/, 'legend'], [/^annotation$/, 'annotation'], [/^slider-container$/, 'slider'],
  [/^updatemenu-container$/, 'menu'], [/^colorbar$/, 'colorbar'], [/^textpoint$/, 'trace text'],
];
function kind(el, div) {
  for (let e = el; e && e !== div; e = e.parentElement) {
    const cls = (e.getAttribute && e.getAttribute('class')) || '';
    if (/hoverlayer|modebar/.test(cls)) return null;
    for (const c of cls.split(/\s+/)) for (const [re, k] of KINDS) if (re.test(c)) return k;
  }
  return 'other';
}
function shown(el, div) {
  for (let e = el; e && e !== div; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) return false;
  }
  const fill = getComputedStyle(el).fill || '';
  return !/rgba\(\s*0,\s*0,\s*0,\s*0\s*\)/.test(fill);  // a transparent (hidden) label
}
function box(el) {
  const r = el.getBoundingClientRect();
  return {l: r.left, r: r.right, t: r.top, b: r.bottom, w: r.width, h: r.height};
}
function overlap(a, b, tol) {
  return Math.min(a.r, b.r) - Math.max(a.l, b.l) > tol && Math.min(a.b, b.b) - Math.max(a.t, b.t) > tol;
}
const problems = [];
document.querySelectorAll('.plotly-graph-div').forEach((div, index) => {
  const fig = box(div);
  const figure = div.closest('figure');
  const caption = figure && figure.querySelector('.caption-number');
  const name = caption ? caption.innerText.trim() : `figure ${index + 1}`;
  const texts = [];
  div.querySelectorAll('svg text').forEach(t => {
    if (!t.textContent.trim()) return;
    const k = kind(t, div);
    if (!k || !shown(t, div)) return;
    const b = box(t);
    if (b.w < 1 || b.h < 1) return;
    texts.push(Object.assign(b, {k, text: t.textContent.trim().slice(0, 50)}));
  });
  const tol = 1;
  for (const b of texts)
    if (b.l < fig.l - tol || b.r > fig.r + tol || b.t < fig.t - tol || b.b > fig.b + tol)
      problems.push({figure: name, problem: 'outside the figure', a: `${b.k}: ${b.text}`});
  for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++)
    if (overlap(texts[i], texts[j], tol))
      problems.push({figure: name, problem: 'overlap', a: `${texts[i].k}: ${texts[i].text}`,
                     b: `${texts[j].k}: ${texts[j].text}`});
  // the legend's and the colour bars' boxes cover what lies under them
  const areas = [];
  div.querySelectorAll('.legend rect.bg').forEach(r => { if (shown(r, div)) areas.push(['legend', box(r)]); });
  div.querySelectorAll('.colorbar rect.cbfill').forEach(r => { if (shown(r, div)) areas.push(['colorbar', box(r)]); });
  for (const [k, a] of areas) for (const t of texts)
    if (t.k !== k && overlap(a, t, tol))
      problems.push({figure: name, problem: `under the ${k}`, a: `${t.k}: ${t.text}`});
  // a log axis labelled "2" at 0.02 (plotly's minor labels) misreads as a value
  const layout = div._fullLayout || {};
  for (const key of Object.keys(layout).filter(k => /^[xy]axis\d*$/.test(k))) {
    const ax = layout[key];
    if (ax.type !== 'log' || !ax.showticklabels) continue;
    for (const v of ax._vals || []) {
      const value = Number(String(v.text || '').replace(/\u2212/g, '-').replace(/<[^>]*>/g, ''));
      if (v.text && Number.isFinite(value) && Math.abs(value - Math.pow(10, v.x)) > 1e-6 * Math.pow(10, v.x))
        problems.push({figure: name, problem: 'a log axis tick label that is not its value', a: `${key}: ${v.text}`});
    }
  }
});
return problems;
