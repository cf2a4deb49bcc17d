// Live workshop board: the page works without this script (the "refresh" link); with it,
// each machine's tile follows the server-sent events of /board/events. A change of state
// reloads the page so that the right buttons show.
(function () {
  if (!window.EventSource) return;
  var source = new EventSource('/board/events');
  source.addEventListener('machine', function (message) {
    var live = JSON.parse(message.data);
    var tile = document.getElementById('machine-' + live.machine);
    if (!tile) return;
    var state = tile.querySelector('[data-field="state"]');
    if (state && !state.classList.contains('state-' + live.state)) { window.location.reload(); return; }
    var percent = Math.round((live.progress || 0) * 100);
    var bar = tile.querySelector('[data-field="progress"]');
    if (bar) { bar.value = percent; bar.textContent = percent + ' %'; }
    var text = tile.querySelector('[data-field="percent"]');
    if (text) text.textContent = percent + ' %';
    var remaining = tile.querySelector('[data-field="remaining"]');
    if (remaining && live.remaining_s != null) {
      var m = Math.round(live.remaining_s / 60);
      remaining.textContent = (m >= 60 ? Math.floor(m / 60) + ' h ' + (m % 60) + ' min' : m + ' min');
    }
    var temps = tile.querySelector('[data-field="temperatures"]');
    if (temps && live.hotend) {
      temps.textContent = '🌡 ' + Math.round(live.hotend[0]) + ' °C' + (live.bed ? ' / ' + Math.round(live.bed[0]) + ' °C' : '');
    }
  });
})();
