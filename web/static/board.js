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
    // Each heater with its target; one that is off and cold (under 40 °C) is left out,
    // as the page does (board.rs, `temperatures`).
    var temps = tile.querySelector('[data-field="temperatures"]');
    if (temps) {
      var parts = [];
      [['hotend', live.hotend], ['bed', live.bed]].forEach(function (h) {
        var reading = h[1];
        if (!reading) return;
        var actual = reading[0], target = reading[1] > 0 ? reading[1] : null;
        if (target === null && actual < 40) return;
        var text = temps.getAttribute('data-' + h[0]) + ' ' + Math.round(actual) + ' °C';
        if (target !== null) text += ' (' + temps.getAttribute('data-target') + ' ' + Math.round(target) + ' °C)';
        parts.push(text);
      });
      temps.textContent = parts.join(' · ');
    }
  });
})();
