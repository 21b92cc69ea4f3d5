/* calltracker console: the little behaviour the pages need; no inline scripts (CSP). */
document.addEventListener('click', (e) => {
  const btn = e.target.closest('[data-copy]');
  if (!btn) return;
  const source = document.getElementById(btn.dataset.copy);
  navigator.clipboard.writeText(source.textContent).then(() => {
    btn.textContent = 'Copied';
    setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
  });
});
document.addEventListener('submit', (e) => {
  const msg = e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});
// Meters get their width from data-pct, as the CSP forbids inline style attributes.
for (const m of document.querySelectorAll('.meter[data-pct] > i')) {
  m.style.width = Math.min(100, Number(m.parentElement.dataset.pct) || 0) + '%';
}
