// A job's page, live: the page works without this script (the "refresh" link); with it,
// the progress follows the server-sent events of /jobs/ID/events, and a change of state
// reloads the page so that its place in the queue, its reason and its buttons show.
(function () {
  if (!window.EventSource) return;
  var facts = document.getElementById('job');
  if (!facts || !facts.getAttribute('data-live')) return;
  var state = facts.getAttribute('data-state');
  var source = new EventSource('/jobs/' + facts.getAttribute('data-job') + '/events');
  source.addEventListener('job', function (message) {
    var job = JSON.parse(message.data);
    if (job.state !== state) { source.close(); window.location.reload(); return; }
    var bar = facts.querySelector('[data-field="progress"]');
    if (bar) { bar.value = job.percent; bar.textContent = job.percent + ' %'; }
    var text = facts.querySelector('[data-field="percent"]');
    if (text) text.textContent = job.percent + ' %';
  });
})();
