// Warden admin console: progressive enhancement only; every page works without it.
document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return;
  const confirmText = target.getAttribute("data-confirm");
  if (confirmText && !window.confirm(confirmText)) {
    event.preventDefault();
    return;
  }
  const copyFrom = target.getAttribute("data-copy");
  if (copyFrom) {
    const source = document.getElementById(copyFrom);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent || "").then(() => { target.textContent = "Copied"; });
    }
  }
});
